"""Where a corrected delta goes: FedAsync-style mixing or a FedBuff-style buffer.

Methods that turn a stale delta into an estimate of the fresh one (DC-ASGD,
gi-switch) rebase it on the current model, x_t + Δ̃, and then aggregate it
like an ordinary arrival. ``aggregation`` picks the rule:

* ``fedasync``: x ← (1 − a)·x + a·(x + Δ̃) = x + a·Δ̃, a = α·s(τ) (Xie et al. 2019, Alg. 1);
* ``fedbuff``: buffer s(τ)·Δ̃; every K arrivals x ← x + η_g·mean (Nguyen et al. 2022, Alg. 1),
  with server momentum as in ``ServerOptimizer``.

s(τ) defaults to ``constant``: a compensated delta stands for a fresh one,
and both papers apply it undiscounted.
"""
from __future__ import annotations

import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.training.flat import weighted_mean
from asyncfl_bench.staleness import make_staleness

KINDS = ("fedasync", "fedbuff")

DEFAULTS = {
    "aggregation": "fedasync",  # fedasync | fedbuff
    "alpha": 0.6,               # fedasync: α, FedAsync's default
    "staleness": "constant",    # s(τ), see asyncfl_bench/staleness.py
    "buffer_size": 10,          # fedbuff: K
    "server_lr": 1.0,           # fedbuff: η_g
    "server_momentum": 0.0,     # fedbuff: server SGD momentum
}


class DeltaAggregator:
    def __init__(self, hp):
        if hp.aggregation not in KINDS:
            raise UserError(f"unknown aggregation '{hp.aggregation}'; valid: {', '.join(KINDS)}")
        if hp.aggregation == "fedbuff" and hp.buffer_size < 1:
            raise UserError(f"buffer_size must be >= 1, got {hp.buffer_size}")
        self.hp = hp
        self.s = make_staleness(hp.staleness)
        self.opt = ServerOptimizer(hp.server_lr, hp.server_momentum)
        self.buffer: list[torch.Tensor] = []

    def add(self, params: torch.Tensor, delta: torch.Tensor, staleness: int) -> torch.Tensor | None:
        """Take one corrected delta; return the new server model when this arrival makes one."""
        w = self.s(staleness)
        if self.hp.aggregation == "fedasync":
            return params + (self.hp.alpha * w) * delta
        self.buffer.append(w * delta)
        if len(self.buffer) < self.hp.buffer_size:
            return None
        new = self.opt.apply(params, weighted_mean(self.buffer, [1.0] * len(self.buffer)))
        self.buffer = []
        return new

    def state(self) -> dict:
        return {"buffer": list(self.buffer), "opt": self.opt.state()}

    def load(self, state: dict) -> None:
        self.buffer = list(state["buffer"])
        self.opt.load(state["opt"])


class ServerOptimizer:
    """Server SGD with momentum on the pseudo-gradient −Δ (FedOpt's form):
    m ← μ·m + Δ; x ← x + η·m. With μ = 0 this is x ← x + η·Δ."""

    def __init__(self, lr: float, momentum: float = 0.0):
        self.lr, self.momentum, self.buf = lr, momentum, None

    def apply(self, params: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        if self.momentum:
            self.buf = delta.clone() if self.buf is None else self.buf.mul_(self.momentum).add_(delta)
            delta = self.buf
        return params + self.lr * delta

    def state(self) -> dict:
        return {"buf": self.buf}

    def load(self, state: dict) -> None:
        self.buf = state.get("buf")
