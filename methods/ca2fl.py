"""CA2FL: asynchronous FL with cached update calibration.

Wang, Cao, Wu, Chen, Chen. "Tackling the Data Heterogeneity in Asynchronous
Federated Learning with Cached Update Calibration". ICLR 2024, Algorithm 2.

The server caches each client's latest update h_i (zero before its first).
An arriving Δ_i adds the calibration Δ_i − h_i to an accumulator S and
replaces h_i. After M arrivals:

    v_t = h̄_t + (1/M)·S,   x ← x + η·v_t,   h̄_{t+1} = (1/N)·Σ_i h_i

where h̄_t is the cache average at the start of the round (over all N clients,
unseen ones counting as zero). A stale client's contribution is thus corrected
by what it last sent, and every client's latest direction stays in the update.

Choices: if a client arrives twice within one round, the second calibration
uses the cache written by the first (the cache is always the latest update).
The cache holds N model-sized vectors: ``cache_dtype`` (float32 default, as in
the paper; bfloat16/float16 halve it, in the spirit of the paper's
memory-friendly quantised variant) and it lives on the CPU.
"""
from __future__ import annotations

import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate, Method
from asyncfl_bench.methods.aggregation import ServerOptimizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class CA2FL(Method):
    name = "ca2fl"
    source = "Wang et al., ICLR 2024"
    defaults = {
        "buffer_size": 10,        # M, as FedBuff's K
        "server_lr": 1.0,         # η
        "cache_dtype": "float32",
    }

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        if self.hp.cache_dtype not in DTYPES:
            raise UserError(f"ca2fl.cache_dtype '{self.hp.cache_dtype}' unknown; valid: {', '.join(DTYPES)}")
        self.opt = ServerOptimizer(self.hp.server_lr)
        self.cache: dict[int, torch.Tensor] = {}              # h_i, CPU, compact dtype
        self.cache_sum = torch.zeros_like(params, device="cpu", dtype=torch.float64)  # Σ_i h_i
        self.hbar = torch.zeros_like(params)                   # h̄_t, fixed during a round
        self.calibration = torch.zeros_like(params)            # S
        self.arrived = 0

    def receive(self, update: ClientUpdate) -> None:
        delta = update.delta
        old = self.cache.get(update.client)
        old_dev = torch.zeros_like(delta) if old is None else old.to(delta.device, delta.dtype)
        self.calibration += delta - old_dev
        new = delta.to("cpu", DTYPES[self.hp.cache_dtype])
        self.cache_sum += new.double() - (0 if old is None else old.double())
        self.cache[update.client] = new
        self.arrived += 1
        if self.arrived == self.hp.buffer_size:
            v = self.hbar + self.calibration / self.hp.buffer_size
            self.step(self.opt.apply(self.params, v))
            self.hbar = (self.cache_sum / self.ctx.num_clients).to(self.params.device, self.params.dtype)
            self.calibration = torch.zeros_like(self.params)
            self.arrived = 0

    def cache_bytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.cache.values())

    def server_state(self) -> dict:
        return {"cache": dict(self.cache), "cache_sum": self.cache_sum, "hbar": self.hbar,
                "calibration": self.calibration, "arrived": self.arrived}

    def load_server_state(self, state: dict) -> None:
        self.cache = dict(state["cache"])
        self.cache_sum, self.hbar = state["cache_sum"], state["hbar"]
        self.calibration, self.arrived = state["calibration"], state["arrived"]
