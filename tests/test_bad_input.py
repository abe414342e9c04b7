"""Every bad input: exit code 2, a one-line message naming the problem and the fix,
no traceback, and nothing already written is lost."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from asyncfl_bench.cli import app
from asyncfl_bench.config.settings import resolve, run_id
from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.tasks.digits import Digits

runner = CliRunner()
TINY = ["--set", "total_arrivals=20", "--set", "num_clients=8", "--set", "concurrency=3", "--set", "eval_every=10"]
TINY_SET = {"total_arrivals": "20", "num_clients": "8", "concurrency": "3", "eval_every": "10"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A results folder holding one finished run (with its final checkpoint kept)."""
    root = tmp_path_factory.mktemp("res")
    res = runner.invoke(app, ["run", "--method", "fedbuff", "--results", str(root / "r"), "--keep-checkpoints", *TINY])
    assert res.exit_code == 0, res.output
    return root / "r"


def _snapshot(root: Path) -> dict:
    # every results file; the empty per-run lock files (``.locks/*.lock``) hold nothing
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")}


def _other_run_folder(root: Path, seed: int) -> Path:
    cfg = resolve(Digits(), "ci", get_method("fedbuff"), seed, "cpu", dict(TINY_SET), list(methods()))
    return root / "digits" / "fedbuff" / run_id(cfg)


def _ckpt(root: Path) -> Path:
    return next(root.glob("digits/fedbuff/*/checkpoint.pt"))


def _prep_foreign_checkpoint(root: Path, tmp: Path) -> None:
    target = _other_run_folder(root, seed=7)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(_ckpt(root), target / "checkpoint.pt")


def _prep_corrupt_checkpoint(root: Path, tmp: Path) -> None:
    target = _other_run_folder(root, seed=8)
    target.mkdir(parents=True, exist_ok=True)
    (target / "checkpoint.pt").write_bytes(b"not a checkpoint")


def _prep_corrupt_summary(root: Path, tmp: Path) -> None:
    next(root.glob("digits/fedbuff/*/summary.json")).write_text("{oops")


def _prep_bad_curve(root: Path, tmp: Path) -> None:
    next(root.glob("digits/fedbuff/*/curve.csv")).write_text("foo,bar\n1,2\n")


def _prep_bad_baseline(root: Path, tmp: Path) -> None:
    (tmp / "bad.json").write_text("[1, 2")


def _prep_wrong_schema_baseline(root: Path, tmp: Path) -> None:
    (tmp / "old.json").write_text('{"schema": 99, "runs": []}')


def _prep_file_as_results(root: Path, tmp: Path) -> None:
    (tmp / "afile").write_text("I am a file")


def _prep_image_folder_with_a_bad_file(root: Path, tmp: Path) -> None:
    from PIL import Image
    for split in ("train", "test"):
        for ci, cls in enumerate(("cat", "dog")):
            for i in range(6):
                path = tmp / "imgs" / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("L", (8, 8), 40 + 120 * ci).save(path)
    (tmp / "imgs" / "train" / "dog" / "notes.png").write_bytes(b"not an image at all")


def _prep_truncated_trace(root: Path, tmp: Path) -> None:
    from asyncfl_bench.cli import app as cli
    assert runner.invoke(cli, ["trace", "make", "--kind", "exponential", "--clients", "8", "--out",
                               str(tmp / "cut.csv")]).exit_code == 0
    text = (tmp / "cut.csv").read_text()
    (tmp / "cut.csv").write_text(text[:text.rstrip("\n").rindex(",", 0, len(text) - 20)])   # the last row cut short


CASES = [
    # (id, args with {R} = results folder and {T} = scratch folder, expected message, preparation)
    ("unknown task", ["run", "--task", "nope"], "unknown task 'nope'; valid:", None),
    ("unknown method", ["run", "--method", "fedbuf"], "unknown method 'fedbuf'; valid:", None),
    ("unknown preset", ["run", "--preset", "huge"], "unknown preset 'huge' for task 'digits'", None),
    ("unknown --set key", ["run", "--set", "lr=0.1"], "--set lr: unknown key; valid:", None),
    ("--set wrong type", ["run", "--set", "local.lr=fast"], "expected float", None),
    ("--set not key=value", ["run", "--set", "local.lr"], "is not KEY=VALUE", None),
    ("unknown method param", ["run", "--set", "fedbuff.K=3"], "method 'fedbuff' has no parameter 'K'", None),
    ("method param wrong type", ["run", "--set", "fedbuff.buffer_size=big"], "expected int", None),
    ("bad seeds", ["run", "--seeds", "a,b"], "--seeds 'a,b' is not a list of integers", None),
    ("unknown trace kind", ["run", "--set", "trace=zipf"], "unknown trace kind 'zipf'", None),
    ("negative trace param", ["run", "--set", "trace=exponential:mean=-1"], "must be", None),
    ("missing trace file", ["run", "--trace", "{T}/none.csv"], "none.csv", None),
    ("no cuda", ["run", "--device", "cuda"], "no CUDA device; fix: --device cpu", None),
    ("unknown device", ["run", "--device", "tpu"], "unknown device 'tpu'", None),
    ("concurrency > clients", ["run", "--set", "concurrency=50"], "concurrency must be between 1 and", None),
    ("unknown partition", ["run", "--set", "partition=weird"], "unknown partition 'weird'", None),
    ("unknown staleness fn", ["run", "--method", "fedasync", "--set", "fedasync.staleness=cubic"],
     "unknown staleness function 'cubic'", None),
    ("unknown executor", ["run", "--executor", "dask"], "unknown executor 'dask'; valid: local, ray", None),
    # a run that cannot start fails before any other run trains (fedbuff comes first here)
    ("one run cannot start", ["run", "--method", "fedbuff,fedecho", "--seeds", "0,1", "--set", "proxy_fraction=0"],
     "fedecho with proxy=heldout needs a held-out proxy set", None),
    ("unreadable image", ["run", "--task", "imagefolder:{T}/imgs", "--method", "fedbuff"],
     "cannot read image train/dog/notes.png", _prep_image_folder_with_a_bad_file),
    ("pareto shape 0", ["trace", "make", "--kind", "pareto:shape=0", "--clients", "4", "--out", "{T}/p.csv"],
     "shape=0.0, but this trace is set by its mean job time", None),
    ("pareto infinite mean", ["trace", "make", "--kind", "pareto:shape=0.5", "--clients", "4", "--out", "{T}/p.csv"],
     "a Pareto mean is finite only for shape > 1", None),
    ("truncated trace file", ["run", "--trace", "{T}/cut.csv"],
     "row 8, line 13, column 'download_s': the cell is empty: the file looks truncated", _prep_truncated_trace),
    ("unwritable results", ["run", "--method", "fedbuff", "--results", "{T}/afile/r"], "cannot write results",
     _prep_file_as_results),
    ("checkpoint of another config", ["run", "--method", "fedbuff", "--seeds", "7"], "different config",
     _prep_foreign_checkpoint),
    ("corrupt checkpoint", ["run", "--method", "fedbuff", "--seeds", "8"], "corrupt checkpoint", _prep_corrupt_checkpoint),
    ("report: missing folder", ["report", "--results", "{T}/nothing"], "does not exist", None),
    ("report: corrupt summary", ["report"], "corrupt results file", _prep_corrupt_summary),
    ("report: curve lacks columns", ["report"], "missing column", _prep_bad_curve),
    ("check: missing baseline", ["check", "--baseline", "{T}/none.json"], "does not exist; fix:", None),
    ("check: malformed baseline", ["check", "--baseline", "{T}/bad.json"], "not valid JSON", _prep_bad_baseline),
    ("check: wrong schema", ["check", "--baseline", "{T}/old.json"], "not a schema-1 baseline", _prep_wrong_schema_baseline),
]


@pytest.mark.parametrize("name, args, message, prep", CASES, ids=[c[0] for c in CASES])
def test_bad_input(finished, tmp_path, name, args, message, prep):
    root = tmp_path / "r"
    shutil.copytree(finished, root)
    if prep is not None:
        prep(root, tmp_path)
    before = _snapshot(root)
    argv = [a.replace("{R}", str(root)).replace("{T}", str(tmp_path)) for a in args]
    if "--results" not in argv and argv[0] in ("run", "report", "check"):
        argv += ["--results", str(root)]
    if argv[0] == "run":
        argv = ["run", *TINY, *argv[1:]]     # the case's own --set comes last and wins
    res = runner.invoke(app, argv)
    text = res.output.replace("\n", " ")
    assert res.exit_code == 2, res.output
    assert message in text, res.output
    assert "Traceback" not in res.output
    assert "error:" in res.output and ("fix" in text or "valid" in text), res.output
    assert _snapshot(root) == before                   # nothing already written was touched, nothing new ran
    assert not list(tmp_path.glob("p.csv"))


def _commands(group, path=()):
    """Every (sub)command of the CLI with its argv prefix."""
    yield path, group
    if hasattr(group, "commands"):   # a group (typer's own click types are no click.Group)
        for name, cmd in group.commands.items():
            yield from _commands(cmd, (*path, name))


def test_every_help_text_prints_its_brackets():
    """Help is plain text: `asyncfl-bench[ray]` and `KIND[:k=v,...]` must not be read as markup."""
    import re

    import typer.main
    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in _commands(root):
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        wanted = {m for t in texts for m in re.findall(r"\[[^\]\s]+\]", t)}
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
        assert res.exit_code == 0, res.output
        flat = " ".join(res.output.split())
        for bracket in wanted:
            assert bracket in flat, (path, bracket)
            checked += 1
    assert checked >= 3   # the run help's [ray], KIND[:k=v,...] and others


def test_diverging_run_is_recorded_and_exits_2(tmp_path):
    res = runner.invoke(app, ["run", "--method", "fedasync", "--results", str(tmp_path / "r"), *TINY,
                              "--set", "local.lr=1e6"])
    assert res.exit_code == 2 and "diverged" in res.output and "lower local.lr" in res.output.replace("\n", " ")
    summary = next((tmp_path / "r").glob("digits/fedasync/*/summary.json")).read_text()
    assert '"diverged": true' in summary


def test_ctrl_c_mid_run_exits_2_and_keeps_the_checkpoint(tmp_path):
    cmd = [sys.executable, "-m", "asyncfl_bench", "run", "--method", "fedbuff", "--results", str(tmp_path / "r"),
           "--set", "total_arrivals=100000", "--set", "eval_every=1000", "--checkpoint-every", "5"]
    # SIGINT back to its default: a test run started in the background inherits it ignored,
    # and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "r").glob("digits/fedbuff/*/checkpoint.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert list((tmp_path / "r").glob("digits/fedbuff/*/checkpoint.pt"))


@pytest.mark.parametrize("task", ["femnist", "cifar10", "20newsgroups"])
def test_missing_data_offline_exits_2_before_any_run(tmp_path, monkeypatch, task):
    if task not in __import__("asyncfl_bench.config.registry", fromlist=["tasks"]).tasks():
        pytest.skip(f"{task} not registered")
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "empty-cache"))
    res = runner.invoke(app, ["run", "--task", task, "--method", "fedbuff", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2, res.output
    text = res.output.replace("\n", " ")
    assert f"data prepare {task}" in text and "--data-dir" in text and "Traceback" not in res.output
    assert not list((tmp_path / "r").rglob("*.json"))          # nothing started
