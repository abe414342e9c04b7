import os
import subprocess
import sys

from typer.testing import CliRunner

from asyncfl_bench.cli import app

runner = CliRunner()
TINY = ["--set", "total_arrivals=20", "--set", "num_clients=8", "--set", "concurrency=3", "--set", "eval_every=10"]


def invoke(*args):
    return runner.invoke(app, list(args))


def test_run_then_report(tmp_path):
    r = str(tmp_path / "r")
    # long enough (and K = 2) that both methods clearly pass the target, so the speedup is defined
    longer = [*TINY, "--set", "total_arrivals=40", "--set", "fedbuff.buffer_size=2", "--set", "target_accuracy=0.2"]
    res = invoke("run", "--method", "fedbuff,fedasync", "--seeds", "0,1", "--results", r, *longer)
    assert res.exit_code == 0, res.output
    summaries = list((tmp_path / "r" / "digits").glob("*/*/summary.json"))
    assert len(summaries) == 4
    before = {p: p.read_bytes() for p in summaries}
    again = invoke("run", "--method", "fedbuff,fedasync", "--seeds", "0,1", "--results", r, *longer)
    assert again.output.count("skipped") == 8    # a progress line and a table row per run
    assert {p: p.read_bytes() for p in summaries} == before      # finished runs untouched
    rep = invoke("report", "--results", r)
    assert rep.exit_code == 0, rep.output
    md = (tmp_path / "r" / "report" / "leaderboard.md").read_text()
    assert "fedbuff" in md and "fedasync" in md and "1.00×" in md   # FedBuff's speedup over itself
    png = tmp_path / "r" / "report" / "digits-ci-accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_console_script_and_module_and_no_torchvision(tmp_path):
    code = ("import sys, runpy; sys.argv=['asyncfl-bench','run','--method','all','--results',%r] + %r;"
            "import asyncfl_bench.cli as c\ntry:\n    c.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('torchvision','transformers','datasets')]\n"
            "assert not bad, bad" % (str(tmp_path / "r"), TINY))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    res = subprocess.run([sys.executable, "-m", "asyncfl_bench", "list"], capture_output=True, text=True)
    assert res.returncode == 0 and "fedbuff" in res.stdout and "digits" in res.stdout


def test_methods_and_tasks_are_not_top_level_packages():
    res = subprocess.run([sys.executable, "-c", "import methods"], capture_output=True, cwd="/")
    assert res.returncode != 0
    res = subprocess.run([sys.executable, "-c", "import tasks"], capture_output=True, cwd="/")
    assert res.returncode != 0


def test_list_params_shows_each_methods_search_space():
    res = subprocess.run([sys.executable, "-m", "asyncfl_bench", "list", "--params"], capture_output=True,
                         text=True, env={**os.environ, "COLUMNS": "500"})
    assert res.returncode == 0, res.stderr
    row = next(line for line in res.stdout.splitlines() if line.split("│")[1:2] and
               line.split("│")[1].strip() == "fedbuff")
    assert "server_lr=log:low=0.1,high=10.0" in row and "buffer_size=" in row   # search space and defaults


def test_piped_run_prints_one_whole_line_per_run_and_skipped_runs_keep_their_time(tmp_path):
    cmd = [sys.executable, "-m", "asyncfl_bench", "run", "--method", "fedbuff", "--results", str(tmp_path), *TINY]
    first = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "40"})
    assert first.returncode == 0, first.stderr
    line = next(x for x in first.stderr.splitlines() if x.startswith("digits/fedbuff seed 0:"))   # progress: stderr
    assert line.endswith(", ran") and "20 arrivals" in line and "…" not in line
    again = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "40"})
    skipped = next(x for x in again.stderr.splitlines() if x.startswith("digits/fedbuff seed 0:"))
    assert skipped.endswith("skipped (done)") and skipped.split(", ")[1] == line.split(", ")[1] != "t=0.0s"


def test_the_cli_sets_the_cyclic_collector_before_its_imports():
    """The entry point raises the collector's first threshold (start-up: fewer rescans of
    torch's and pandas' import-time objects); a fresh interpreter shows it."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import gc, asyncfl_bench.cli; print(gc.get_threshold()[0])"],
                         capture_output=True, text=True, check=True)
    assert int(out.stdout) == 100_000
