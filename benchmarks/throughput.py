"""Client updates per second: sequential vs batched vs ``--batch-clients auto``, and the
floating-point rate of local training against a large matmul, all in one process.

For each model, one group of ``concurrency`` jobs (the ci preset's in-flight count,
each client's real step count) is trained by each path in turn, ``--reps`` times,
interleaved so that load from other processes hits every path alike; each path's cost
is its fastest repetition (load only adds time; ``spread`` shows how much it added), and
``auto``'s cost is that of the path its rule picks.

Then the femnist ci CNN's training FLOPs (FlopCounterMode: forward and backward) per
second of sequential training are compared with a float32 matmul, and so are the paper
FEMNIST CNN's. ``gemm_only`` is a reference for that rate: the step's own matrix
products (convolutions as im2col products) timed as separate bare ``torch.mm`` calls.
Rates are taken on sequential training only: FlopCounterMode's convolution-backward
formula ignores ``groups``, so it would count the weight gradient of a vmapped
convolution (K jobs folded into K groups) K times over.

    python benchmarks/throughput.py [--device cpu] [--reps 5] [--out results.csv]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from asyncfl_bench.training.batched import BatchedTrainer, unsupported_reason
from asyncfl_bench.training.path import BatchClients, choose_path
from asyncfl_bench.config.settings import SETUP_DEFAULTS, deep_merge
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.digits import Digits
from asyncfl_bench.tasks.models import FemnistCNN, ImageCNN, ResNet18, TextClassifier
from asyncfl_bench.tasks.presets import CI_LOCAL
from asyncfl_bench.training.local import LocalTrainer, job_seed


def digits_case():
    task = Digits()
    setup = deep_merge(SETUP_DEFAULTS, {k: v for k, v in task.presets["ci"].items() if k != "methods"})
    data = task.load(setup, 0)
    return dict(name="digits ci CNN", build=task.model_builder(setup, data), local=setup["local"],
                x=data.x_train, y=data.y_train, clients=data.clients, concurrency=setup["concurrency"])


def synthetic_case(name, build, shape, classes, local, concurrency, clients=40, per_client=(60, 400)):
    """Random uint8 images (the femnist/cifar tasks' storage type) with client sizes
    spread like a natural partition; only shapes and step counts matter for speed."""
    g = torch.Generator().manual_seed(0)
    sizes = torch.randint(per_client[0], per_client[1], (clients,), generator=g).tolist()
    x = torch.randint(0, 256, (sum(sizes), *shape), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (sum(sizes),), generator=g)
    bounds = np.cumsum([0] + sizes)
    return dict(name=name, build=build, local=local, x=x, y=y, concurrency=concurrency,
                clients=[torch.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])])


def text_case(concurrency=8, clients=20, per_client=(200, 800), max_len=64, vocab=30522, width=384):
    """The 20newsgroups ci model (one encoder layer, d_model 64, over a frozen 384-wide
    table, 64 tokens) on random token ids; Adam at the ci preset's lr."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(vocab, width, generator=g) * 0.05
    sizes = torch.randint(per_client[0], per_client[1], (clients,), generator=g).tolist()
    x = torch.randint(1, vocab, (sum(sizes), max_len), generator=g)
    y = torch.randint(0, 20, (sum(sizes),), generator=g)
    bounds = np.cumsum([0] + sizes)
    return dict(name="20newsgroups ci transformer",
                build=lambda: TextClassifier(table, 20, 0, max_len, d_model=64, layers=1, heads=2),
                local=dict(CI_LOCAL, lr=3e-3), x=x, y=y, concurrency=concurrency,
                clients=[torch.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:])])


def cases():
    # femnist ci: ImageCNN(1, 28, 62) with CI_LOCAL (Adam, batch 32, 10 steps), 10 in flight
    femnist = synthetic_case("femnist ci CNN", lambda: ImageCNN(1, 28, 62, [0.5], [0.25]), (1, 28, 28), 62,
                             dict(CI_LOCAL), 10)
    # cifar10/100 ci: ImageCNN(3, 32, 10), 8 in flight (train_subset 10000 over 20 clients)
    cifar = synthetic_case("cifar ci CNN", lambda: ImageCNN(3, 32, 10, [0.5] * 3, [0.25] * 3), (3, 32, 32), 10,
                           dict(CI_LOCAL), 8, clients=20, per_client=(200, 800))
    # the cifar tasks' ResNet-18 layout at 1/8 width with GroupNorm (BatchNorm cannot be stacked)
    resnet = synthetic_case("ResNet-18/8 GroupNorm", lambda: ResNet18(10, [0.5] * 3, [0.25] * 3, "group", 3, 8),
                            (3, 32, 32), 10, dict(CI_LOCAL), 10)
    return [digits_case(), femnist, cifar, text_case(), resnet]


def measure(case, device, reps):
    dev = torch.device(device)
    build, local, k = case["build"], {**SETUP_DEFAULTS["local"], **case["local"]}, case["concurrency"]
    torch.manual_seed(0)
    model = build().to(dev)
    layout = Layout.of(model)
    base = layout.flatten(model).clone()
    x, y = case["x"].to(dev), case["y"].to(dev)
    clients = [c.to(dev) for c in case["clients"][:k]]
    seeds = [job_seed(0, c, 0) for c in range(k)]
    seq = LocalTrainer(build, layout, local, dev)
    path = choose_path(BatchClients("auto"), model, layout, local, dev, k, x[:1])
    stackable = unsupported_reason(model, layout) is None

    def sequential():
        return [seq.train(base, x[c], y[c], s) for c, s in zip(clients, seeds)]

    runs = {"sequential": sequential}
    if stackable:   # else the only path is sequential, and auto takes it
        bat = BatchedTrainer(build, layout, local, dev)
        runs["batched"] = lambda: bat.train_many([base] * k, x, y, clients, seeds)
    for fn in runs.values():   # warm-up
        fn()
    times = {name: [] for name in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    # load from other processes only ever adds time: the fastest repetition is each
    # path's cost. auto runs one of the two paths, so its cost is that path's.
    fastest = {name: min(t) for name, t in times.items()}
    chosen = "batched" if stackable and path.group > 1 else "sequential"
    bat_t = fastest.get("batched", float("nan"))
    best = min(fastest.values())
    return {"model": case["name"], "device": device, "jobs": k, "batch_size": local["batch_size"],
            "seq_updates_per_s": k / fastest["sequential"], "batched_updates_per_s": k / bat_t,
            "auto_path": path.describe() if stackable else "sequential (fallback)",
            "batched_over_seq": fastest["sequential"] / bat_t, "auto_slowdown_vs_best": fastest[chosen] / best - 1,
            "spread": max(max(t) / min(t) - 1 for t in times.values())}


def training_gemms(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, int, int]]:
    """The (M, K, N) matrix products of one training step of ``model`` on the batch
    ``x``, convolutions written as im2col products: for each Conv2d and Linear, the
    forward, the weight gradient and, unless its input is data, the input gradient.
    Their 2·M·K·N sum is FlopCounterMode's count of the step (tests/test_throughput_bench.py)."""
    shapes: list[tuple[int, int, int]] = []

    def record(mod, args, out):
        if isinstance(mod, torch.nn.Conv2d):
            g = mod.groups
            m = out.shape[0] * out.shape[-1] * out.shape[-2]
            k = mod.in_channels // g * mod.kernel_size[0] * mod.kernel_size[1]
            n = mod.out_channels // g
        else:
            g, m, k, n = 1, out.numel() // out.shape[-1], mod.in_features, mod.out_features
        shapes.extend([(m, k, n), (k, m, n)] * g + ([(m, n, k)] * g if args[0].requires_grad else []))

    layers = [mod for mod in model.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))]
    handles = [mod.register_forward_hook(record) for mod in layers]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes


def timed(fn, device) -> float:
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def flop_rate(case, device, reps, size=2048):
    """Sequential local training of one job, in FLOP/s, against a float32 matmul, and
    the rate of the step's own matrix products as bare ``torch.mm`` calls (``gemm_only``)."""
    dev = torch.device(device)
    local = {**SETUP_DEFAULTS["local"], **case["local"]}
    torch.manual_seed(0)
    model = case["build"]().to(dev)
    layout = Layout.of(model)
    trainer = LocalTrainer(case["build"], layout, local, dev)
    base = layout.flatten(model).clone()
    x, y, c = case["x"].to(dev), case["y"].to(dev), case["clients"][0].to(dev)
    with FlopCounterMode(display=False) as counter:
        trainer.train(base, x[c], y[c], 1)
    flops = counter.get_total_flops()
    # the step's matrix products as plain torch.mm calls, with no other work at all
    shapes = training_gemms(model, x[c[:local["batch_size"]]])
    gemm_flops = sum(2 * m * k * n for m, k, n in shapes)
    mats = [(torch.randn(m, k, device=dev), torch.randn(k, n, device=dev)) for m, k, n in shapes]
    a, b = torch.randn(size, size, device=dev), torch.randn(size, size, device=dev)
    runs = {"matmul": lambda: a @ b, "train": lambda: trainer.train(base, x[c], y[c], 1),
            "gemms": lambda: [p @ q for p, q in mats]}
    times = {name: [] for name in runs}
    for _ in range(reps + 1):   # interleaved; the first of each is a warm-up
        for name, fn in runs.items():
            times[name].append(timed(fn, device))
    # fastest repetitions, as in measure()
    mm_rate, train_rate, gemm_rate = (f / min(times[n][1:]) for f, n in
                                      ((2 * size ** 3, "matmul"), (flops, "train"), (gemm_flops, "gemms")))
    return {"model": case["name"], "device": device, "train_gflop_per_job": flops / 1e9,
            "train_gflops": train_rate / 1e9, "matmul_gflops": mm_rate / 1e9, "share_of_matmul": train_rate / mm_rate,
            "step_gflop": gemm_flops / 1e9, "gemm_only_gflops": gemm_rate / 1e9,
            "gemm_only_share": gemm_rate / mm_rate}


def flop_cases():
    """The femnist ci CNN, and the paper's FEMNIST CNN (the ``small``/``paper`` presets' model)."""
    paper = synthetic_case("femnist paper CNN", lambda: FemnistCNN(62), (1, 28, 28), 62, dict(CI_LOCAL), 10)
    return [next(c for c in cases() if c["name"] == "femnist ci CNN"), paper]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="throughput.csv")
    ap.add_argument("--models", default="", help="comma list of substrings of model names (default: all)")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    wanted = [w.strip().lower() for w in args.models.split(",") if w.strip()]
    rows = [measure(c, args.device, args.reps) for c in cases()
            if not wanted or any(w in c["name"].lower() for w in wanted)]
    rates = pd.DataFrame([flop_rate(c, args.device, args.reps) for c in flop_cases()])
    table = pd.DataFrame(rows)
    table["load_before"], table["load_after"], table["machine"] = load0, os.getloadavg()[0], machine()
    table.to_csv(args.out, index=False)
    rates.to_csv(args.out.replace(".csv", "_flops.csv"), index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(f"machine: {machine()}; load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
        print(table.drop(columns=["machine", "load_before", "load_after"]).to_string(index=False))
        print(rates.to_string(index=False))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
