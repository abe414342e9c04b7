"""Server and client compute per arrival, in FLOPs, of each method's whole run, and its
ratio to FedBuff's: the run-time ratio that compute alone implies.

Every client job (``Simulator._train``) and every server step (the method's ``receive``:
aggregation, synthesis, distillation, compensation) runs under
``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and matrix
products, forward and backward (element-wise work is free to it). Clients train one by
one (``--batch-clients off``): stacking jobs changes the kernels, not the FLOPs.

``flop_ratio`` = (client + server FLOPs) ÷ FedBuff's: the run-time ratio to FedBuff of a
method whose work all ran at one FLOP rate. Against the measured ratio
(``method_ratio.py``) it tells how much of a method's time is compute it must do, and how
much is overhead a faster implementation could remove: a measured ratio below it means the
server's kernels run at a higher FLOP rate than the clients' (bigger batches); above it,
per-call overhead.

    python benchmarks/server_flops.py --task digits --out benchmarks/results/server_flops.csv
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from asyncfl_bench.config.registry import get_method
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.simulation.simulator import Simulator
from asyncfl_bench.training.path import BatchClients
from method_runs import add_arguments, method_configs, write_table   # beside this script


def counted(fn, total: dict, key: str):
    def wrapper(*args, **kwargs):
        with FlopCounterMode(display=False) as counter:
            out = fn(*args, **kwargs)
        total[key] += counter.get_total_flops()
        return out
    return wrapper


def run_counting(config: dict, task, data) -> tuple[dict, dict]:
    """(summary, {"client": FLOPs, "server": FLOPs}) of one run."""
    total = {"client": 0, "server": 0}
    cls = get_method(config["method"])
    train, receive = Simulator._train, cls.__dict__.get("receive")
    Simulator._train = counted(train, total, "client")
    cls.receive = counted(cls.receive, total, "server")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary, _ = execute(config, task, data, RunOptions(Path(tmp), force=True,
                                                                batch_clients=BatchClients.parse("off")))
    finally:
        Simulator._train = train
        if receive is None:
            del cls.receive          # it was inherited
        else:
            cls.receive = receive
    return summary, total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    task, configs = method_configs(args)
    names = list(configs)
    data = task.load(configs[names[0]]["setup"], 0, args.data_dir)
    rows = []
    for n in names:
        summary, flops = run_counting(configs[n], task, data)
        arrivals = summary["arrivals"]
        rows.append({"task": args.task, "preset": args.preset, "method": n,
                     "client_mflop_per_arrival": flops["client"] / arrivals / 1e6,
                     "server_mflop_per_arrival": flops["server"] / arrivals / 1e6,
                     "server_to_client": flops["server"] / max(flops["client"], 1),
                     "total_gflop": (flops["client"] + flops["server"]) / 1e9, "arrivals": arrivals})
        print(f"{n}: client {rows[-1]['client_mflop_per_arrival']:.1f} MFLOP, "
              f"server {rows[-1]['server_mflop_per_arrival']:.1f} MFLOP per arrival", flush=True)
    table = pd.DataFrame(rows)
    table["flop_ratio"] = table["total_gflop"] / table.loc[table["method"] == "fedbuff", "total_gflop"].iloc[0]
    write_table(table, args.out)


if __name__ == "__main__":
    main()
