"""FedBuff: buffered asynchronous aggregation.

Nguyen, Malik, Zhan, Yousefpour, Rabbat, Malek, Huba. "Federated Learning with
Buffered Asynchronous Aggregation". AISTATS 2022.

Algorithm 1: the server buffers K client deltas, each scaled by s(τ) = 1/sqrt(1+τ),
then takes a server step x ← x + η_g · (1/K)·Σ s(τ_i)·Δ_i and bumps the version.
Defaults follow Meta's FLSim reference configuration (K = 10, server SGD lr 0.7
with momentum 0.9); presets override them for small runs and say so.
"""
from __future__ import annotations

import torch

from asyncfl_bench.contract.method import ClientUpdate, Method
from asyncfl_bench.methods.aggregation import ServerOptimizer
from asyncfl_bench.training.flat import weighted_mean
from asyncfl_bench.staleness import make_staleness


class FedBuff(Method):
    name = "fedbuff"
    source = "Nguyen et al., AISTATS 2022"
    defaults = {
        "buffer_size": 10,          # K
        "server_lr": 0.7,           # η_g
        "server_momentum": 0.9,
        "staleness": "sqrt",        # s(τ) = 1/sqrt(1+τ)
        "weight_by_samples": False, # the paper averages deltas uniformly
    }

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        self.s = make_staleness(self.hp.staleness)
        self.opt = ServerOptimizer(self.hp.server_lr, self.hp.server_momentum)
        self.buffer: list[torch.Tensor] = []
        self.counts: list[float] = []

    def receive(self, update: ClientUpdate) -> None:
        self.buffer.append(self.s(update.staleness) * update.delta)
        self.counts.append(float(update.num_samples) if self.hp.weight_by_samples else 1.0)
        if len(self.buffer) >= self.hp.buffer_size:
            # (1/K)·Σ s(τ_i)Δ_i, or the sample-weighted mean when asked for
            self.step(self.opt.apply(self.params, weighted_mean(self.buffer, self.counts)))
            self.buffer, self.counts = [], []

    def server_state(self) -> dict:
        return {"buffer": list(self.buffer), "counts": list(self.counts), "opt": self.opt.state()}

    def load_server_state(self, state: dict) -> None:
        self.buffer, self.counts = list(state["buffer"]), list(state["counts"])
        self.opt.load(state["opt"])
