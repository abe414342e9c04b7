"""FedAvg in synchronous rounds: the no-staleness reference.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas. "Communication-Efficient
Learning of Deep Networks from Decentralized Data". AISTATS 2017.

Each round the schedule starts ``concurrency`` clients on the same model and
the round ends when the slowest returns (same trace, same per-job durations as
the asynchronous methods). The server then sets x ← x + η·Σ (n_i/n)·Δ_i, which
with η = 1 is the paper's x ← Σ (n_i/n)·x_i. On a trace with availability windows
a round can lose clients that go offline mid-job; it then averages the updates
that arrived (the schedule marks each round's last arrival).
"""
from __future__ import annotations

import torch

from asyncfl_bench.contract.method import ClientUpdate, Method
from asyncfl_bench.methods.aggregation import ServerOptimizer
from asyncfl_bench.training.flat import weighted_mean


class FedAvgSync(Method):
    name = "fedavg-sync"
    source = "McMahan et al., AISTATS 2017"
    synchronous = True
    defaults = {
        "server_lr": 1.0,            # η = 1: plain FedAvg
        "weight_by_samples": True,   # n_i / n, as in the paper
    }

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        self.opt = ServerOptimizer(self.hp.server_lr)
        self.round: list[torch.Tensor] = []
        self.counts: list[float] = []

    def receive(self, update: ClientUpdate) -> None:
        self.round.append(update.delta)
        self.counts.append(float(update.num_samples) if self.hp.weight_by_samples else 1.0)
        if update.ends_round:
            self.step(self.opt.apply(self.params, weighted_mean(self.round, self.counts)))
            self.round, self.counts = [], []

    def server_state(self) -> dict:
        return {"round": list(self.round), "counts": list(self.counts)}

    def load_server_state(self, state: dict) -> None:
        self.round, self.counts = list(state["round"]), list(state["counts"])
