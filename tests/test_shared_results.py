"""A results folder shared by several processes: a run is computed once, by one process,
whoever else asks for it at the same time; a seed or method named twice runs once."""
import json
import os
import subprocess
import sys
import time

from typer.testing import CliRunner

from asyncfl_bench.cli import app

TINY = ["--set", "total_arrivals=30", "--set", "num_clients=8", "--set", "concurrency=3", "--set", "eval_every=10"]


def _progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("digits/fedbuff seed 0:")]


def test_a_second_process_waits_for_a_run_in_progress_and_never_recomputes_it(tmp_path):
    long = ["--set", "total_arrivals=1000", "--set", "num_clients=8", "--set", "concurrency=3",
            "--set", "eval_every=100"]
    cmd = [sys.executable, "-m", "asyncfl_bench", "run", "--method", "fedbuff", "--threads", "1",
           "--results", str(tmp_path), *long]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list((tmp_path / ".locks").glob("*.lock")) and time.time() < deadline:
        time.sleep(0.05)   # the first process is inside the run
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    out_first = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (out_first, second.stderr)
    assert _progress_lines(out_first[1])[0].endswith(", ran")
    assert "is running in another process; waiting for it to finish" in " ".join(second.stderr.split())
    assert _progress_lines(second.stderr)[0].endswith(", skipped (done)")   # waited, then reused it
    folder, = [p for p in (tmp_path / "digits" / "fedbuff").iterdir() if p.is_dir()]
    assert json.loads((folder / "summary.json").read_text())["arrivals"] == 1000


def test_a_seed_or_method_named_twice_runs_once(tmp_path):
    res = CliRunner().invoke(app, ["run", "--method", "fedbuff,fedbuff", "--seeds", "0,0", "--results",
                                   str(tmp_path), *TINY])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "digits" / "fedbuff").glob("*/summary.json"))) == 1
    assert len(_progress_lines(res.output)) == 1    # one run started


def test_a_crafted_results_folder_cannot_write_outside_out_and_is_refused(tmp_path):
    """A results folder someone sends you: a task name that climbs out of --out, and a folder
    whose config is another run's, are refused with exit 2; nothing is written outside --out."""
    from report_results import make_results

    results = make_results(tmp_path / "r")
    folder = next((results / "digits" / "fedbuff").iterdir())
    for path in (folder / "config.json", folder / "summary.json"):
        data = json.loads(path.read_text())
        data["task"] = "../../escaped"
        path.write_text(json.dumps(data))
    out = tmp_path / "out" / "a" / "b"
    res = CliRunner().invoke(app, ["report", "--results", str(results), "--out", str(out)])
    assert res.exit_code == 2 and "is not a plain name" in res.output, res.output
    assert not list(tmp_path.rglob("escaped*")) and not out.exists()

    results = make_results(tmp_path / "r2")
    folder = next((results / "digits" / "fedasync").iterdir())
    config = json.loads((folder / "config.json").read_text())
    config["seed"] = 99                      # the config is now another run's than its folder's name
    (folder / "config.json").write_text(json.dumps(config))
    res = CliRunner().invoke(app, ["report", "--results", str(results)])
    assert res.exit_code == 2 and "not this folder's" in " ".join(res.output.split()), res.output


def test_run_refuses_to_reuse_a_folder_whose_config_is_another_runs(tmp_path):
    args = ["run", "--method", "fedbuff", "--results", str(tmp_path), *TINY]
    assert CliRunner().invoke(app, args).exit_code == 0
    folder, = [p for p in (tmp_path / "digits" / "fedbuff").iterdir() if p.is_dir()]
    config = json.loads((folder / "config.json").read_text())
    config["setup"]["local"]["lr"] = 0.5
    (folder / "config.json").write_text(json.dumps(config))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "not this folder's" in " ".join(res.output.split()), res.output
