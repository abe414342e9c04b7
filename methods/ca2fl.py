"""CA2FL: asynchronous FL with cached update calibration.

Wang, Cao, Wu, Chen, Chen. "Tackling the Data Heterogeneity in Asynchronous
Federated Learning with Cached Update Calibration". ICLR 2024, Algorithm 2.

The server caches each client's latest update h_i (zero before its first).
An arriving Δ_i puts the calibration Δ_i − h_i in the buffer (FedBuff's,
``aggregation.BufferedMethod``) and replaces h_i. After M arrivals, with S the
sum of their calibrations:

    v_t = h̄_t + (1/M)·S,   x ← x + η·v_t,   h̄_{t+1} = (1/N)·Σ_i h_i

where h̄_t is the cache average at the start of the round (over all N clients,
unseen ones counting as zero). A stale client's contribution is thus corrected
by what it last sent, and every client's latest direction stays in the update.

Choices: if a client arrives twice within one round, the second calibration
uses the cache written by the first (the cache is always the latest update).
The cache holds N model-sized vectors: ``cache_dtype`` (float32 default, as in
the paper; bfloat16/float16 halve it, in the spirit of the paper's
memory-friendly quantised variant) and it lives on the CPU.

Step size, audited against the paper (no authors' code was found to compare with):

* Alg. 2 applies η to v_t, and v_t already holds the (1/M): η multiplies a MEAN of
  the round's calibrations (plus the cache average h̄_t), one weight per update, no
  staleness scaling, no server momentum.
* Here: ``aggregate`` returns v_t with S/M (M = ``buffer_size``, equal to the buffer's
  length when the step fires) and ``ServerOptimizer`` applies η with μ = 0: the same
  rule, factor 1. η = 1 applies v_t in full; each arrival contributes η/M of its
  calibration Δ_i − h_i, 0.1 at the defaults. The paper's tuned η per task is not
  taken over.
* Presets: ci M = 5 (η = 1) → 0.2; small and paper keep M = 10, η = 1 → 0.1, where
  FedBuff gets 0.1·s(τ) (small) and 0.025 (paper, K = 2, η_g = 0.05).
"""
from __future__ import annotations

import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.aggregation import BufferedMethod, LatestPerClient

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CA2FL(BufferedMethod):
    name = "ca2fl"
    source = "Wang et al., ICLR 2024"
    defaults = {
        "buffer_size": 10,        # M, as FedBuff's K
        "server_lr": 1.0,         # η
        "cache_dtype": "float32",
    }
    search_space = {"server_lr": "log:low=0.1,high=5.0"}

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        if self.hp.cache_dtype not in DTYPES:
            raise UserError(f"ca2fl.cache_dtype '{self.hp.cache_dtype}' unknown; valid: {', '.join(DTYPES)}")
        # h_i on the CPU in the compact dtype, Σ_i h_i in float64
        self.cache = LatestPerClient(params.shape, DTYPES[self.hp.cache_dtype])
        self.hbar = torch.zeros_like(params)                   # h̄_t, fixed during a round

    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        """The calibration Δ_i − h_i; h_i ← Δ_i."""
        delta = update.delta
        old = self.cache.update(update.client, delta)
        return delta - (torch.zeros_like(delta) if old is None else old.to(delta.device, delta.dtype))

    def aggregate(self) -> torch.Tensor:
        """v_t = h̄_t + (1/M)·S, S the sum of the round's calibrations."""
        calibration = torch.zeros_like(self.params)
        for c in self.agg.buffer:
            calibration += c
        return self.hbar + calibration / self.hp.buffer_size

    def after_step(self) -> None:
        self.hbar = (self.cache.total / self.ctx.num_clients).to(self.params.device, self.params.dtype)

    def cache_bytes(self) -> int:
        return self.cache.nbytes()

    def server_state(self) -> dict:
        return {**super().server_state(), "cache": self.cache.state(), "hbar": self.hbar}

    def load_server_state(self, state: dict) -> None:
        super().load_server_state(state)
        self.cache.load(state["cache"])
        self.hbar = state["hbar"]
