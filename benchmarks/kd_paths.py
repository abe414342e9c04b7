"""FedRevive's distillation with one student forward per teacher batch against one over all
teachers' batches concatenated (``distill.kd``, joint path), on the same run, interleaved.

Runs FedRevive on a task preset (digits ci by default) ``--repeats`` times per path, in one
process and alternating, and prints final accuracy (equal up to float summation order),
server milliseconds per arrival and whole-run seconds, with the joint ÷ per-teacher ratio.

    python benchmarks/kd_paths.py --threads 1
"""
from __future__ import annotations

import argparse
import tempfile

import torch

import asyncfl_bench.methods.distill.kd as kd
import asyncfl_bench.methods.fedrevive as fedrevive
from asyncfl_bench.config.registry import get_method, get_task, methods
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.run import RunOptions, execute


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="digits")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    task = get_task(a.task)
    cfg = resolve(task, a.preset, get_method("fedrevive"), 0, "cpu", {}, list(methods()))
    data = task.load(cfg["setup"], 0)
    distill, times = kd.distill, {False: [], True: []}
    for rep in range(a.repeats):
        for joint in (False, True):
            fedrevive.distill = lambda *args, joint_=joint, **kw: distill(*args, joint=joint_, **kw)
            with tempfile.TemporaryDirectory() as tmp:
                s, _ = execute(cfg, task, data, RunOptions(tmp))
            times[joint].append((s["server_ms_per_arrival"], s["seconds"]["total"]))
            print(f"{rep} {'joint' if joint else 'per-teacher':11s} final {s['final_accuracy']:.4f} "
                  f"server {s['server_ms_per_arrival']:.1f} ms/arrival, run {s['seconds']['total']:.1f} s", flush=True)
    fedrevive.distill = distill
    ms = [sum(t[i] for t in times[True]) / sum(t[i] for t in times[False]) for i in (0, 1)]
    print(f"joint ÷ per-teacher: server {ms[0]:.2f}, run {ms[1]:.2f}")


if __name__ == "__main__":
    main()
