"""Share of a run's wall time spent outside local training and evaluation.

Runs a task preset (digits ci by default) end to end through ``experiment.execute``,
``--reps`` times per method, and splits the wall time of ``execute`` (building the
schedule and method, the event loop, writing results) into local training,
evaluation, the method's server work, and the rest (the simulator's own overhead).
Medians over repetitions.

    python benchmarks/overhead.py [--task digits] [--preset ci] [--methods fedbuff,fedasync]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.training.path import BatchClients
from asyncfl_bench.config.registry import get_method, get_task, method_names, methods


def measure(task_name, preset, method, device, batch_clients, reps, data_dir=None):
    task = get_task(task_name)
    cfg = resolve(task, preset, get_method(method), 0, device, {}, list(methods()))
    data = task.load(cfg["setup"], 0, data_dir).to(device)
    rows = []
    for _ in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            summary, _ = execute(cfg, task, data, RunOptions(Path(tmp), force=True, batch_clients=BatchClients.parse(batch_clients)))
            wall = time.perf_counter() - t0
        s = summary["seconds"]
        rows.append({"wall": wall, "train": s["train"], "eval": s["eval"], "server": s["server"],
                     "path": summary["training_path"]})
    med = {k: statistics.median(r[k] for r in rows) for k in ("wall", "train", "eval", "server")}
    outside = med["wall"] - med["train"] - med["eval"]
    return {"task": task_name, "preset": preset, "method": method, "training_path": rows[0]["path"],
            "wall_s": med["wall"], "train_s": med["train"], "eval_s": med["eval"], "server_s": med["server"],
            "outside_train_eval": outside / med["wall"],
            "simulator_only": (outside - med["server"]) / med["wall"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="digits")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--methods", default="fedbuff,fedasync")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-clients", default="auto")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", default="overhead.csv")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    rows = [measure(args.task, args.preset, m, args.device, args.batch_clients, args.reps, args.data_dir)
            for m in method_names(args.methods)]
    table = pd.DataFrame(rows)
    table["load_before"], table["load_after"] = load0, os.getloadavg()[0]
    table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        print(table.drop(columns=["load_before", "load_after"]).to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
