"""Whole-run time of the distillation methods as a ratio to FedBuff's, in one process.

Each method's run (task preset, seed 0, one thread, a fresh results folder each time) is
repeated ``--reps`` times, the methods interleaved within each repetition so that load
from other processes hits all of them alike; a method's time is its fastest repetition
(load only adds time) and its ratio is that over FedBuff's fastest. The split into local
training, server and evaluation comes from the same run's summary.

    python benchmarks/method_ratio.py --task digits --reps 2
    python benchmarks/method_ratio.py --task femnist --methods fedbuff,fedrevive --reps 2
    python benchmarks/method_ratio.py --methods fedbuff,fedecho --variant fedecho-synthetic=fedecho.proxy=synthetic
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch

from asyncfl_bench.config.registry import get_method
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.run import RunOptions, execute
from method_runs import add_arguments, code_commit, method_configs, write_table   # beside this script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=METHOD.KEY=VALUE[,...]",
                    help="also time METHOD with these settings under LABEL, e.g. "
                         "fedecho-synthetic=fedecho.proxy=synthetic (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    task, configs = method_configs(args)
    for spec in args.variant:
        label, _, sets = spec.partition("=")
        overrides = dict(item.split("=", 1) for item in sets.split(","))
        method = next(iter(overrides)).partition(".")[0]
        configs[label] = resolve(task, args.preset, get_method(method), 0, "cpu", overrides, [method])
    names = list(configs)
    data = task.load(configs[names[0]]["setup"], 0, args.data_dir)
    best: dict[str, dict] = {}
    for rep in range(args.reps):
        for n in names:
            with tempfile.TemporaryDirectory() as tmp:
                summary, _ = execute(configs[n], task, data, RunOptions(Path(tmp)))
            sec = summary["seconds"]
            print(f"rep {rep} {n}: {sec['total']:.2f} s (train {sec['train']:.2f}, server {sec['server']:.2f})",
                  flush=True)
            if n not in best or sec["total"] < best[n]["total_s"]:
                best[n] = {"total_s": sec["total"], "train_s": sec["train"], "server_s": sec["server"],
                           "eval_s": sec["eval"], "final_accuracy": summary["final_accuracy"],
                           "training_path": summary["training_path"]}
    commit = code_commit()
    table = pd.DataFrame([{"task": args.task, "preset": args.preset, "method": n, **b,
                           "ratio_to_fedbuff": b["total_s"] / best["fedbuff"]["total_s"], "reps": args.reps,
                           "commit": commit} for n, b in best.items()])
    write_table(table, args.out)


if __name__ == "__main__":
    main()
