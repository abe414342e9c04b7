"""A run killed mid-way (real SIGKILL) resumes from its checkpoint to the same curve, bit for bit."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from asyncfl_bench.config.registry import methods

ARGS = ["--task", "digits", "--preset", "ci", "--seeds", "0", "--set", "num_clients=10", "--set", "concurrency=4",
        "--set", "total_arrivals=60", "--set", "eval_every=10", "--checkpoint-every", "5"]


def _cmd(method, results):
    return [sys.executable, "-m", "asyncfl_bench", "run", "--method", method, "--results", str(results), *ARGS]


def _only(root: Path, pattern: str) -> Path:
    found = list(root.glob(pattern))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("method", [m for m in ("fedbuff", "ca2fl", "fedrevive") if m in methods()])
def test_sigkill_then_resume_gives_the_uninterrupted_curve(tmp_path, method):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(_cmd(method, tmp_path / "straight"), check=True, capture_output=True, env=env)
    straight = _only(tmp_path / "straight", f"digits/{method}/*/curve.csv")

    proc = subprocess.Popen(_cmd(method, tmp_path / "killed"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    ckpt = None
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "killed").glob(f"digits/{method}/*/checkpoint.pt"))
        if found:
            # wait for a checkpoint past the first, so the kill lands mid-run with state to restore
            first = found[0].stat().st_mtime_ns
            while time.time() < deadline and proc.poll() is None and found[0].stat().st_mtime_ns == first:
                time.sleep(0.01)
            ckpt = found[0]
            break
        time.sleep(0.01)
    assert proc.poll() is None, "run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt is not None and ckpt.exists()
    assert not list((tmp_path / "killed").glob(f"digits/{method}/*/summary.json"))

    res = subprocess.run(_cmd(method, tmp_path / "killed"), capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    resumed = _only(tmp_path / "killed", f"digits/{method}/*/curve.csv")
    pd.testing.assert_frame_equal(pd.read_csv(resumed), pd.read_csv(straight), check_exact=True)
    assert not ckpt.exists()            # finished runs keep only their final artefacts
    arrivals = pd.read_csv(resumed.parent / "arrivals.csv")
    assert list(arrivals["arrival"]) == list(range(1, 61))
