"""A run killed mid-way resumes from its checkpoint to the same curve and model, bit for bit: a real
SIGKILL for three methods, and in-process kills at many arrival positions for every method."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.config.settings import resolve, run_id
from asyncfl_bench.methods.distill.feature_stats import record_running_stats
from asyncfl_bench.simulation import checkpoint
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.tasks.digits import Digits

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
    # the wall time adds both processes' segments, as train/server/eval do: each segment's
    # total spans its parts, so the sum can only hold if no segment is dropped
    seconds = json.loads((resumed.parent / "summary.json").read_text())["seconds"]
    assert seconds["total"] >= seconds["train"] + seconds["server"] + seconds["eval"], seconds


# -- in-process resume from many arrival positions, for every method -------------------
# A kill is stood in for by an exception raised while the arrival after the checkpoint is
# being delivered: that arrival's work is lost, the next call builds every object afresh
# (as a restarted process does) and continues from the checkpoint. Gates are tiny so the
# run crosses each of them; kills land right before and right after each gate opens.
REVIVE = {"freeze_versions": 3, "warmup_versions": 6, "synth_every": 2, "synth_steps": 1, "synth_batch": 8,
          "pool_size": 48, "teachers": 3, "kd_steps": 2, "kd_batch": 8, "nz": 8, "ngf": 8, "proxy_probes": 8}
CASES = {   # case: (method, its overrides, the versions at which its behaviour changes)
    "ca2fl": ("ca2fl", {}, []),
    "dc-asgd": ("dc-asgd", {}, []),
    "fedasync": ("fedasync", {}, []),
    "fedavg-sync": ("fedavg-sync", {}, []),
    "fedbuff": ("fedbuff", {}, []),
    "fedecho": ("fedecho", {}, []),
    # revival and synthesis from version 3, adversarial synthesis from 6, distillation past 6
    "fedrevive": ("fedrevive", REVIVE, [3, 6, 7]),
    # the synthetic proxy set is synthesised and frozen at version 2
    "fedecho-synthetic": ("fedecho", {"proxy": "synthetic", "synthetic_after": 2, "proxy_size": 16,
                                      "synthesiser": "fedrevive:" + ",".join(f"{k}={v}" for k, v in REVIVE.items())},
                          [2]),
    "fedgen": ("fedgen", {}, []),
    "fedopt": ("fedopt", {"kind": "yogi", "bias_correction": True}, []),
    "fadas": ("fadas", {"server_lr": 0.01}, []),
    "mifa": ("mifa", {}, []),
    "fedfa": ("fedfa", {"window": 3}, []),
    "gi-switch": ("gi-switch", {"min_staleness": 1, "iterations": 3, "rec_max": 4}, []),
}
RESUME_SETUP = {"num_clients": "8", "concurrency": "4", "total_arrivals": "20", "eval_every": "1"}


class _Killed(Exception):
    pass


def _execute(config, task, data, root, kill_after=None):
    """One process's worth of a run: stopped at ``kill_after`` arrivals (its checkpoint
    written, the next arrival lost), or run to the end keeping the final state."""
    def stop(position, now, row):
        if kill_after is not None and position == kill_after + 1:
            raise _Killed
    try:
        execute(config, task, data, RunOptions(root, checkpoint_every=kill_after or 0, checkpoint_minutes=0,
                                               keep_checkpoints=kill_after is None), on_progress=stop)
    except _Killed:
        return None
    folder = _only(root, f"digits/{config['method']}/*")
    return (pd.read_csv(folder / "curve.csv"), pd.read_csv(folder / "arrivals.csv"),
            checkpoint.load(folder / checkpoint.NAME, run_id(config))["method"])


def _kill_points(curve: pd.DataFrame, gates: list[int], case: str) -> list[int]:
    """Arrivals to kill after: right before and right after each gate opens (the first
    arrival the server receives at version ≥ gate), plus two drawn at random."""
    before = dict(zip(curve["arrivals"] + 1, curve["version"]))  # server version when arrival a comes in
    last = int(curve["arrivals"].max())
    points = set()
    for gate in gates:
        opens = min(a for a, v in before.items() if v >= gate and a <= last)
        points |= {opens - 1, opens}
    points |= set(random.Random(case).sample(range(1, last), 2))
    return sorted(p for p in points if 0 < p < last)


@pytest.mark.parametrize("case", [c for c, (m, _, _) in CASES.items() if m in methods()])
def test_resume_from_any_arrival_gives_the_uninterrupted_run(tmp_path, one_thread, case):
    method, params, gates = CASES[case]
    task = Digits()
    over = {**RESUME_SETUP, **{f"{method}.{k}": str(v) for k, v in params.items()}}
    config = resolve(task, "ci", get_method(method), 0, "cpu", over, list(methods()))
    data = task.load(config["setup"], 0)
    curve, arrivals, state = _execute(config, task, data, tmp_path / "straight")
    kills = _kill_points(curve, gates, case)
    assert len(kills) >= 2 * len(gates), kills
    for k in kills:
        assert _execute(config, task, data, tmp_path / "killed", kill_after=k) is None
    resumed, resumed_arrivals, resumed_state = _execute(config, task, data, tmp_path / "killed")
    pd.testing.assert_frame_equal(resumed, curve, check_exact=True)
    pd.testing.assert_frame_equal(resumed_arrivals, arrivals, check_exact=True)
    assert resumed_state["version"] == state["version"]
    assert torch.equal(resumed_state["params"], state["params"]), f"{case}: killed after {kills}"


def test_a_fresh_trainer_model_records_every_step_like_a_reused_one():
    """The first job after a resume trains on a fresh module, whose feature-statistics
    hooks do not exist yet when its first step's forward runs: that step must count as it
    does on a module that earlier jobs already hooked, and leave buffers and RNG alone."""
    def net():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3))

    batches = torch.rand(3, 8, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 3

    def job(model):
        record = {}
        for xb in batches:
            model(xb)
            record_running_stats(record, model, 0.1, x=xb)
        return record
    torch.manual_seed(0)
    seen = net()
    job(seen)                                   # an earlier job attached the hooks
    fresh = net()
    fresh.load_state_dict(seen.state_dict())
    rng = torch.get_rng_state()
    a, b = job(seen), job(fresh)
    assert torch.equal(torch.get_rng_state(), rng)
    assert a["steps"] == b["steps"] == len(batches)
    for (ma, va), (mb, vb) in zip(a["stats"], b["stats"]):
        assert torch.equal(ma, mb) and torch.equal(va, vb)
    for (name, x), y in zip(seen.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(x, y), name          # the repeated forward left BatchNorm's running stats
