"""The suite against Meta's FLSim 0.1.0 on one FedBuff workload: whole-process wall time of
each side, alternating, one thread, with both final accuracies.

The workload is the suite's digits ci FedBuff run (20 clients, 10 in flight, 300 arrivals,
K = 5, s(τ) = (1+τ)^−½, local SGD lr 0.1 momentum 0.5 batch 16, one epoch), exported by
``export_workload``: the data view the run trains on (after the proxy hold-out), the
clients' index lists, the seed's initial weights and the schedule. FLSim
(``flsim_fedbuff.py``) replays the same jobs on the same clients from the same weights, and
each pair of runs checks that it did: its per-arrival staleness and client order must equal
the suite's ``arrivals.csv`` (``same_schedule``). Local mini-batch orders differ (each side
shuffles with its own generator), so accuracies agree only up to that.

Both sides run as fresh processes (``asyncfl-bench run ... --threads 1`` and
``flsim_fedbuff.py``), timed from outside the same way, in pairs whose order alternates, so
that load from other processes hits both alike. The ratio of the fastest runs is the
headline (load only adds time); each pair's ratio is in the table.

FLSim's requirements, in a venv that has the suite (FLSim 0.1.0 also lists torchvision,
which only its CIFAR examples use):

    python -m pip install --no-deps flsim==0.1.0 opacus
    python -m pip install hydra-core omegaconf opt-einsum
    python benchmarks/vs_flsim.py --reps 3 --out benchmarks/results/vs_flsim.csv
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from asyncfl_bench.config.registry import get_method, get_task
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.run import build_schedule, build_trace, prepare_data
from asyncfl_bench.tasks.models import SmallCNN
from method_runs import code_commit   # beside this script

FLSIM_SIDE = Path(__file__).with_name("flsim_fedbuff.py")
TICK = 2.0 ** -20   # schedule times on a dyadic grid: FLSim adds time deltas, exactly on it


def suite_config(seed: int) -> dict:
    task = get_task("digits")
    return resolve(task, "ci", get_method("fedbuff"), seed, "cpu", {}, ["fedbuff"])


def export_workload(seed: int, path: Path) -> dict:
    """Write what FLSim needs to train the suite's digits ci FedBuff run; returns it."""
    task, config = get_task("digits"), suite_config(seed)
    setup, params = config["setup"], config["method_params"]
    if params["staleness"] != "sqrt" or params["server_momentum"] or params["weight_by_samples"]:
        raise SystemExit(f"the FLSim side implements s(τ) = (1+τ)^-1/2, no server momentum, equal "
                         f"weights; the preset now says {params}")
    data = prepare_data(task.load(setup, seed), setup, seed)
    torch.manual_seed(seed)                      # the run's initial model
    model = task.model_builder(setup, data)()
    model_args = (1, 8, data.num_classes)
    if type(model) is not SmallCNN or model.state_dict().keys() != SmallCNN(*model_args).state_dict().keys():
        raise SystemExit(f"the FLSim side builds SmallCNN{model_args}; the preset's model is {type(model).__name__}")
    schedule = build_schedule(config, False, build_trace(config, data))
    order = np.argsort(schedule.dispatch_time, kind="stable")   # FLSim creates jobs in dispatch order
    rows = np.stack([schedule.client[order], np.round(schedule.dispatch_time[order] / TICK) * TICK,
                     np.round(schedule.arrival_time[order] / TICK) * TICK], 1)
    local = setup["local"]
    workload = {"seed": seed, "x_train": data.x_train.float(), "y_train": data.y_train,
                "x_test": data.x_test.float(), "y_test": data.y_test,
                "clients": [idx.cpu() for idx in data.clients], "model_args": list(model_args),
                "init_state": model.state_dict(), "schedule": torch.as_tensor(rows, dtype=torch.float64),
                "buffer_size": params["buffer_size"], "server_lr": params["server_lr"],
                "total_arrivals": setup["total_arrivals"], "lr": local["lr"], "momentum": local["momentum"],
                "batch_size": local["batch_size"], "local_epochs": local["epochs"]}
    torch.save(workload, path)
    return workload


def timed(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def run_suite(seed: int, results: Path) -> tuple[float, dict, pd.DataFrame]:
    seconds, _ = timed([sys.executable, "-m", "asyncfl_bench", "run", "--task", "digits", "--method", "fedbuff",
                        "--preset", "ci", "--seeds", str(seed), "--threads", "1", "--results", str(results),
                        "--force", "--checkpoint-minutes", "0"])
    folder = next((results / "digits" / "fedbuff").glob("*/summary.json")).parent
    return seconds, json.loads((folder / "summary.json").read_text()), pd.read_csv(folder / "arrivals.csv")


def run_flsim(workload: Path, out: Path) -> tuple[float, dict]:
    seconds, _ = timed([sys.executable, str(FLSIM_SIDE), str(workload), "--json", str(out)])
    return seconds, json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="pairs of runs (the order alternates)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="append the pairs to this CSV")
    args = ap.parse_args()
    if importlib.util.find_spec("flsim") is None:
        raise SystemExit("FLSim is not installed in this Python: see this script's docstring")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        workload = tmp / "workload.pt"
        export_workload(args.seed, workload)
        rows = []
        for rep in range(args.reps):
            run = {"suite": lambda: run_suite(args.seed, tmp / "results"),
                   "flsim": lambda: run_flsim(workload, tmp / "flsim.json")}
            sides = {side: run[side]() for side in (("suite", "flsim") if rep % 2 == 0 else ("flsim", "suite"))}
            (suite_s, summary, arrivals), (flsim_s, flsim) = sides["suite"], sides["flsim"]
            rows.append({"rep": rep, "first": "suite" if rep % 2 == 0 else "flsim", "suite_s": suite_s,
                         "flsim_s": flsim_s, "ratio": suite_s / flsim_s,
                         "suite_accuracy": summary["final_accuracy"], "flsim_accuracy": flsim["final_accuracy"],
                         "flsim_train_loop_s": flsim["train_loop_s"], "suite_run_s": summary["seconds"]["total"],
                         "same_schedule": flsim["staleness"] == arrivals["staleness"].tolist()
                         and flsim["clients"] == arrivals["client"].tolist(),
                         "arrivals": flsim["arrivals"], "load": os.getloadavg()[0]})
            print(pd.DataFrame(rows[-1:]).to_string(index=False, header=rep == 0), flush=True)
    table = pd.DataFrame(rows)
    table.insert(0, "seed", args.seed)
    table["torch"] = torch.__version__
    table["commit"] = code_commit()
    best = table["suite_s"].min() / table["flsim_s"].min()
    print(f"\nsuite ÷ FLSim, fastest of {args.reps} each: {best:.2f} "
          f"({table['suite_s'].min():.2f} s against {table['flsim_s'].min():.2f} s); "
          f"accuracy {table['suite_accuracy'].iloc[0]:.3f} against {table['flsim_accuracy'].iloc[0]:.3f}; "
          f"same schedule in every pair: {bool(table['same_schedule'].all())}")
    if args.out is not None:
        table.to_csv(args.out, mode="a", header=not args.out.exists(), index=False)


if __name__ == "__main__":
    main()
