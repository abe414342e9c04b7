"""Differentiable per-layer feature statistics (the synthesiser's L_BN) and the
client-side recorder as a regulariser (sequential local training).

Which layers are tracked, their statistics and the running average are shared with
local training: ``asyncfl_bench.training.feature_stats`` (the batched path records
inside its vectorised step).
"""
from __future__ import annotations

import weakref

import torch
from torch import nn

from asyncfl_bench.training.feature_stats import CONV, batch_stats, fold_running_stats, layer_stats, tracked_layers

__all__ = ["BatchStats", "batch_stats", "record_running_stats", "stats_matching_loss", "tracked_layers"]


class BatchStats:
    """Differentiable batch statistics of each tracked layer, for the last forward.

    Use as a context manager around a teacher's forward pass on synthetic inputs;
    ``stats`` then holds [(mean, var), ...] in layer order, with their graphs.
    """

    def __init__(self, model: nn.Module, kinds: tuple[type, ...] = CONV):
        self.layers = tracked_layers(model, kinds)
        self.stats: list = [None] * len(self.layers)
        self._handles = []

    def _hook(self, i):
        def fn(module, args, kwargs, output):
            self.stats[i] = layer_stats(module, kwargs, output)
        return fn

    def __enter__(self) -> "BatchStats":
        self._handles = [m.register_forward_hook(self._hook(i), with_kwargs=True) for i, m in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class _LastBatch:
    """Persistent hooks holding the detached statistics of the latest forward."""

    def __init__(self, model: nn.Module, kinds):
        layers = tracked_layers(model, kinds)
        self.stats: list = [None] * len(layers)
        for i, m in enumerate(layers):
            m.register_forward_hook(self._hook(i), with_kwargs=True)

    def _hook(self, i):
        def fn(module, args, kwargs, output):
            with torch.no_grad():
                self.stats[i] = tuple(s.detach() for s in layer_stats(module, kwargs, output))
        return fn


_LAST: "weakref.WeakKeyDictionary[nn.Module, _LastBatch]" = weakref.WeakKeyDictionary()


def record_running_stats(record: dict, model: nn.Module, momentum: float = 0.1,
                         kinds: tuple[type, ...] = CONV, x: torch.Tensor | None = None) -> None:
    """Fold the statistics of ``model``'s latest forward into ``record``.

    Called once per local training step, right after that step's forward on ``x``
    (from a method's client regulariser). ``record["stats"]`` becomes a list of
    (running_mean, running_var), an exponential average with ``momentum`` as in
    FedRevive's trackers, started at the first batch (no bias toward an initial
    value). ``record`` stays plain data, so it can travel in a payload.

    The hooks are attached to ``model`` the first time it is seen and stay there:
    the local trainer reuses one model for every job. That first step's forward ran
    before the hooks existed; given its input ``x`` it is repeated once (no
    gradient; buffers and the RNG left as they were), so every job records every
    step whether or not the model was seen before: a fresh trainer model (the first
    job of a run, or the first after resuming from a checkpoint) gives the same
    statistics as a reused one. Without ``x`` that step is skipped.
    """
    last = _LAST.get(model)
    if last is None:
        last = _LAST[model] = _LastBatch(model, kinds)
        if x is None:
            return
        _repeat_forward(model, x)
    if any(s is None for s in last.stats):
        return
    fold_running_stats(record, last.stats, momentum)


@torch.no_grad()
def _repeat_forward(model: nn.Module, x: torch.Tensor) -> None:
    """Run ``model`` on ``x`` for its hooks only: the buffers a training-mode forward
    updates (BatchNorm running statistics, trackers) and the RNG are put back, so the
    job trains exactly as if the forward had not happened."""
    buffers = [b.clone() for b in model.buffers()]
    with torch.random.fork_rng(devices=[x.device] if x.device.type != "cpu" else [],
                               device_type=x.device.type):
        model(x)
    for b, saved in zip(model.buffers(), buffers):
        b.copy_(saved)


def stats_matching_loss(batch: list, target: list, variance: bool = True) -> torch.Tensor:
    """Σ_l ‖μ_l − μ̂_l‖₂ + ‖σ²_l − σ̂²_l‖₂ (unsquared L2, FedRevive's L_BN); the
    reference's text path matches the means only (``variance=False``)."""
    loss = batch[0][0].new_zeros(()) if batch else torch.zeros(())
    for (m, v), (tm, tv) in zip(batch, target):
        loss = loss + (m - tm).norm(2)
        if variance:
            loss = loss + (v - tv).norm(2)
    return loss
