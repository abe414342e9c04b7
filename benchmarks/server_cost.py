"""Server cost per arrival of every method: wall time inside ``Method.receive``
(aggregation, compensation, distillation, synthesis), per delivered update, and its
breakdown into the phases each method times itself.

Runs each method once on a task preset (digits ci by default; the same schedule and
seed for all) and reads ``server_ms_per_arrival``, the run's wall time and the phase
timers from its summary: every ``*_seconds`` field a method reports (FedRevive:
synthesis, distill, probe; FedEcho: predict, distill, synthesis; FedGen: generator), as
ms per arrival in a ``<phase>_ms`` column, and ``bookkeeping_ms``, the server time no
phase accounts for (aggregation, the teacher buffer, loading weights).

    python benchmarks/server_cost.py [--task digits] [--preset ci] [--methods all]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
import torch

from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.config.registry import get_method, get_task, method_names, methods


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="digits")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--methods", default="all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", default="server_cost.csv")
    args = ap.parse_args()
    task, load0 = get_task(args.task), os.getloadavg()[0]
    data, rows = None, []
    for name in method_names(args.methods):
        cfg = resolve(task, args.preset, get_method(name), 0, args.device, {}, list(methods()))
        if data is None:
            data = task.load(cfg["setup"], 0, args.data_dir).to(args.device)
        with tempfile.TemporaryDirectory() as tmp:
            s, _ = execute(cfg, task, data, RunOptions(Path(tmp), force=True))
        sec = s["seconds"]
        phases = {k[:-len("_seconds")] + "_ms": 1000 * v / s["arrivals"] for k, v in sorted(s.items())
                  if k.endswith("_seconds") and isinstance(v, (int, float))}
        rows.append({"method": name, "server_ms_per_arrival": s["server_ms_per_arrival"], **phases,
                     "bookkeeping_ms": s["server_ms_per_arrival"] - sum(phases.values()),
                     "server_share_of_wall": sec["server"] / sec["total"], "wall_s": sec["total"],
                     "train_s": sec["train"], "eval_s": sec["eval"], "arrivals": s["arrivals"],
                     "training_path": s["training_path"]})
        print(f"{name}: {rows[-1]['server_ms_per_arrival']:.2f} ms per arrival", flush=True)
    table = pd.DataFrame(rows).sort_values("server_ms_per_arrival")
    table["task"], table["preset"], table["load_before"], table["load_after"] = (
        args.task, args.preset, load0, os.getloadavg()[0])
    table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        print(table.drop(columns=["task", "preset", "load_before", "load_after"]).to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
