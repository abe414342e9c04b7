"""Peak memory of a run for N = 100, 1,000 and 10,000 clients at the same concurrency.

Each N runs in a fresh process (peak RSS only grows within one) on the same synthetic
8×8 data set (the size of digits' images, 100,000 samples, split iid), the digits ci
CNN, a fixed number of local steps per job (so every N does the same work), and the
same concurrency and number of arrivals. Reported: the process's peak RSS, and its
growth over the RSS measured just before the run starts (data already loaded), which
is what the run itself holds: live base models, pending results, the schedule, the
per-client index tensors. On CUDA also the peak allocated device memory.

    python benchmarks/memory.py [--clients 100,1000,10000] [--concurrency 10] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

SAMPLES, TEST = 100_000, 2_000


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def one(clients: int, concurrency: int, arrivals: int, device: str, batch_clients: str) -> dict:
    import torch

    from asyncfl_bench.config.settings import resolve
    from asyncfl_bench.simulation.run import RunOptions, execute
    from asyncfl_bench.training.path import BatchClients
    from asyncfl_bench.config.registry import get_method, methods
    from asyncfl_bench.contract.task import Task, TaskData
    from asyncfl_bench.tasks.models import SmallCNN
    from asyncfl_bench.tasks.partition import iid

    import numpy as np

    class Synthetic(Task):
        name = "synthetic"
        presets = {"bench": {"partition": "iid", "trace": "fedrevive", "eval_every": 100,
                             "local": {"optimizer": "sgd", "lr": 0.05, "batch_size": 8, "iterations": 5}}}

        def load(self, setup, seed, data_dir=None):
            g = torch.Generator().manual_seed(seed)
            x, y = torch.rand(SAMPLES + TEST, 1, 8, 8, generator=g), torch.randint(0, 10, (SAMPLES + TEST,), generator=g)
            parts = iid(y[:SAMPLES].numpy(), setup["num_clients"], np.random.default_rng(seed))
            return TaskData(x[:SAMPLES], y[:SAMPLES], x[SAMPLES:], y[SAMPLES:], 10,
                            [torch.from_numpy(p) for p in parts])

        def model_builder(self, setup, data):
            return lambda: SmallCNN(1, 8, 10)

    task = Synthetic()
    over = {"num_clients": str(clients), "concurrency": str(concurrency), "total_arrivals": str(arrivals)}
    cfg = resolve(task, "bench", get_method("fedbuff"), 0, device, over, list(methods()))
    data = task.load(cfg["setup"], 0).to(device)
    before = rss_mib()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    with tempfile.TemporaryDirectory() as tmp:
        summary, _ = execute(cfg, task, data, RunOptions(Path(tmp), force=True, batch_clients=BatchClients.parse(batch_clients)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row = {"clients": clients, "concurrency": concurrency, "arrivals": arrivals, "device": device,
           "training_path": summary["training_path"], "max_live_bases": summary["max_live_bases"],
           "peak_rss_mib": peak, "run_rss_growth_mib": peak - before}
    if device.startswith("cuda"):
        row["cuda_peak_run_mib"] = (torch.cuda.max_memory_allocated() - cuda_before) / 2 ** 20
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", default="100,1000,10000")
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--arrivals", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-clients", default="auto")
    ap.add_argument("--out", default="memory.csv")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.child, args.concurrency, args.arrivals, args.device, args.batch_clients)))
        return
    rows = []
    for n in (int(c) for c in args.clients.split(",")):
        cmd = [sys.executable, __file__, "--child", str(n), "--concurrency", str(args.concurrency),
               "--arrivals", str(args.arrivals), "--device", args.device, "--batch-clients", args.batch_clients]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"N = {n}: peak RSS {rows[-1]['peak_rss_mib']:.1f} MiB", flush=True)
    table = pd.DataFrame(rows)
    first = table.iloc[0]
    table["peak_vs_first"] = table["peak_rss_mib"] / first["peak_rss_mib"]
    table["growth_vs_first"] = table["run_rss_growth_mib"] / max(first["run_rss_growth_mib"], 1e-9)
    table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(table.to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
