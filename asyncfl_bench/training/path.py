"""Which training path a run takes: sequential, or in-flight jobs batched (a fixed rule, never timing)."""
from __future__ import annotations

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
# is forward FLOPs per mini-batch; see the Performance section of the README.
CPU_BATCH_MAX_FLOPS = 50e6


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(sample)
    return counter.get_total_flops()


def parse_batch_clients(spec) -> str:
    """``auto``, ``off`` or a group size ≥ 1 (as text); anything else is a UserError."""
    spec = str(spec).strip().lower()
    if spec in ("auto", "off"):
        return spec
    try:
        n = int(spec)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"--batch-clients '{spec}' is not auto, off or a group size >= 1; "
                        f"fix: e.g. --batch-clients auto")
    return str(n)


def choose_path(spec: str, model: nn.Module, layout: Layout, local: dict, device: torch.device,
                concurrency: int, sample: torch.Tensor) -> TrainingPath:
    """``spec`` is ``auto``, ``off`` or a group size N. ``auto`` is a fixed rule (so a
    run's numbers never depend on timing noise): batch all in-flight jobs on a GPU;
    on CPU only when a mini-batch's forward pass is below ``CPU_BATCH_MAX_FLOPS``."""
    spec = parse_batch_clients(spec)
    if spec == "off":
        return TrainingPath(0, "--batch-clients off")
    why_not = unsupported_reason(model, layout)
    if why_not is not None:
        return TrainingPath(0, f"fallback: {why_not}")
    if spec != "auto":
        n = min(int(spec), concurrency)
        return TrainingPath(n if n > 1 else 0, f"--batch-clients {spec}")
    if concurrency < 2:
        return TrainingPath(0, "auto: one job in flight")
    if torch.device(device).type != "cpu":
        return TrainingPath(concurrency, "auto: GPU, all in-flight jobs")
    flops = forward_flops(model, sample[:1]) * local["batch_size"]
    if flops <= CPU_BATCH_MAX_FLOPS:
        return TrainingPath(concurrency, f"auto: CPU, {flops / 1e6:.1f} MFLOP per forward batch "
                                         f"<= {CPU_BATCH_MAX_FLOPS / 1e6:.0f}")
    return TrainingPath(0, f"auto: CPU, {flops / 1e6:.1f} MFLOP per forward batch "
                           f"> {CPU_BATCH_MAX_FLOPS / 1e6:.0f}")
