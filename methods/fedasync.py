"""FedAsync: mix each arriving model into the server model.

Xie, Koyejo, Gupta. "Asynchronous Federated Optimization". arXiv:1903.03934, 2019.

Algorithm 1: x ← (1 − α_t)·x + α_t·x_i with α_t = α·s(τ). The paper's
staleness functions are constant, polynomial (1+τ)^−a and hinge; its
experiments use α ∈ {0.6, 0.9} and find polynomial a = 0.5 a good default.
"""
from __future__ import annotations

from asyncfl_bench.staleness import make_staleness
from asyncfl_bench.contract.method import ClientUpdate, Method


class FedAsync(Method):
    name = "fedasync"
    source = "Xie, Koyejo, Gupta, arXiv:1903.03934 (2019)"
    defaults = {
        "alpha": 0.6,                    # α, the mixing weight
        "staleness": "polynomial:a=0.5", # s(τ)
    }
    search_space = {"alpha": "log:low=0.1,high=1.0"}

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        self.s = make_staleness(self.hp.staleness)

    def receive(self, update: ClientUpdate) -> None:
        a = self.hp.alpha * self.s(update.staleness)
        self.step(self.params.lerp(update.params, a))   # (1 − a)·x + a·x_i
