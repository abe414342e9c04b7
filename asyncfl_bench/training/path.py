"""Which training path a run takes: sequential, or in-flight jobs batched (a fixed rule, never timing)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from asyncfl_bench.errors import UserError
from asyncfl_bench.training.batched import unsupported_reason
from asyncfl_bench.training.flat import Layout


@dataclass
class TrainingPath:
    """How a run trains its jobs: ``group`` jobs at most per vectorised pass (0: sequential)."""

    group: int
    reason: str            # why this path

    def describe(self) -> str:
        return f"batched(N={self.group})" if self.group else "sequential"


# On CPU a stacked step pays for grouped convolutions (slow kernels) and wins only
# where a sequential step is dominated by per-call overhead: tiny models. The bound
# is forward FLOPs per mini-batch, by torch's thread count, because a second thread
# speeds the stacked step more than the sequential one (benchmarks/throughput.py,
# batched ÷ sequential; see the Performance section of the README): at 1 thread the
# digits ci CNN (10.8 MFLOP) gains 1.15-1.18x and the femnist ci CNN (22.9 MFLOP) loses
# (0.81-0.83x); at 2 threads the cifar ci CNN (34 MFLOP) breaks even (0.96-1.02x).
# Measured at 1 and 2 threads only; more threads keep the 2-thread bound.
CPU_BATCH_MAX_FLOPS = {1: 15e6, 2: 50e6}


def cpu_batch_max_flops(threads: int) -> float:
    """The ``auto`` rule's bound at ``threads`` torch threads."""
    return CPU_BATCH_MAX_FLOPS[min(max(int(threads), 1), max(CPU_BATCH_MAX_FLOPS))]


# Modules whose forward computes matrix products outside any Conv/Linear child: the
# FLOP counter's own trace is needed for them (attention's projections and products).
_TRACED = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.Transformer)


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int:
    """Forward FLOPs of ``model`` on ``sample``, as ``torch.utils.flop_counter`` counts them
    (2·MACs of convolutions and matrix products; element-wise work is free). Convolution
    and linear layers are counted from their output shapes by forward hooks, which is
    what the counter finds in a model built of them, without the counter's tracing
    machinery (its first use costs over a second of start-up); a model with attention
    goes through the counter itself."""
    if any(isinstance(m, _TRACED) for m in model.modules()):
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(sample)
        return counter.get_total_flops()
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Linear):
            total += 2 * output.numel() * module.in_features
        else:   # ConvNd: each output element is a dot product over (C_in/groups)·kernel
            total += 2 * output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in hooks:
            h.remove()
    return total


@dataclass(frozen=True)
class BatchClients:
    """``--batch-clients``, parsed once: ``auto``, ``off``, or a fixed group size."""

    mode: str = "auto"     # auto | off | fixed
    size: int = 0          # the group size when fixed

    @classmethod
    def parse(cls, spec) -> "BatchClients":
        """``auto``, ``off`` or a group size ≥ 1 (as text or int); anything else is a UserError."""
        if isinstance(spec, BatchClients):
            return spec
        text = str(spec).strip().lower()
        if text in ("auto", "off"):
            return cls(text)
        try:
            n = int(text)
        except ValueError:
            n = 0
        if n < 1:
            raise UserError(f"--batch-clients '{text}' is not auto, off or a group size >= 1; "
                            f"fix: e.g. --batch-clients auto")
        return cls("fixed", n)

    def __str__(self) -> str:
        return str(self.size) if self.mode == "fixed" else self.mode


def choose_path(batch: BatchClients, model: nn.Module, layout: Layout, local: dict, device: torch.device,
                concurrency: int, sample: torch.Tensor, threads: int | None = None) -> TrainingPath:
    """``auto`` is a fixed rule (so a run's numbers never depend on timing noise): batch
    all in-flight jobs on a GPU; on CPU only when a mini-batch's forward pass is below
    the bound for the run's thread count (``threads``, default: torch's now; a run records
    it, as it changes CPU float results anyway). ``off`` trains one by one; a size N
    batches up to N."""
    if batch.mode == "off":
        return TrainingPath(0, "--batch-clients off")
    why_not = unsupported_reason(model, layout)
    if why_not is not None:
        return TrainingPath(0, f"fallback: {why_not}")
    if batch.mode == "fixed":
        n = min(batch.size, concurrency)
        return TrainingPath(n if n > 1 else 0, f"--batch-clients {batch}")
    if concurrency < 2:
        return TrainingPath(0, "auto: one job in flight")
    if torch.device(device).type != "cpu":
        return TrainingPath(concurrency, "auto: GPU, all in-flight jobs")
    threads = torch.get_num_threads() if threads is None else threads
    flops, bound = forward_flops(model, sample[:1]) * local["batch_size"], cpu_batch_max_flops(threads)
    at = f"auto: CPU, {flops / 1e6:.1f} MFLOP per forward batch"
    limit = f"{bound / 1e6:.0f} at {threads} thread{'s' if threads > 1 else ''}"
    if flops <= bound:
        return TrainingPath(concurrency, f"{at} <= {limit}")
    return TrainingPath(0, f"{at} > {limit}")
