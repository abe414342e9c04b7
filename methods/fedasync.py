"""FedAsync: mix each arriving model into the server model.

Xie, Koyejo, Gupta. "Asynchronous Federated Optimization". arXiv:1903.03934, 2019.

Algorithm 1: x ← (1 − α_t)·x + α_t·x_i with α_t = α·s(τ). The paper's
staleness functions are constant, polynomial (1+τ)^−a and hinge; its
experiments use α ∈ {0.6, 0.9} and find polynomial a = 0.5 a good default.

Step size, audited against the paper:

* α is a mixing weight on MODELS (Alg. 1, the server's update line), not a learning
  rate on a delta, and every arrival is its own update: no buffer, so no sum-or-mean
  question and no per-sample weighting. In delta form x ← x + α_t·(x_i − x_t) with
  x_i − x_t = Δ_i − (x_t − x_{t−τ}): a stale model is also pulled back toward its base.
* Here: ``lerp`` is that rule exactly; α = 0.6 and polynomial a = 0.5 are the paper's
  values, conversion factor 1. One arrival moves the model by 0.6·(1+τ)^−0.5 of
  (x_i − x_t): 0.6 fresh, 0.27 at τ = 4 (FedBuff's ci preset: 0.2·s(τ) of Δ_i).
* Departure: the paper's workers minimise a proximal local objective
  f(z) + (ρ/2)·‖z − x‖²; here clients run the task's plain local training, the same
  for every method. That changes the size of x_i − x_t, not what α means.
* Presets: no task preset overrides fedasync.

The paper's three named variants are registered as methods of their own, so a
leaderboard can hold them side by side: ``fedasync`` is FedAsync+Poly (a = 0.5),
``fedasync-const`` FedAsync+Const (s = 1) and ``fedasync-hinge`` FedAsync+Hinge with
the paper's a = 10, b = 4 (s = 1 up to τ = 4, then 1/(10(τ − 4) + 1)); each differs
from ``fedasync`` only in its default ``staleness``.
"""
from __future__ import annotations

from asyncfl_bench.staleness import make_staleness
from asyncfl_bench.contract.method import ClientUpdate, Method


class FedAsync(Method):
    name = "fedasync"
    source = "Xie, Koyejo, Gupta, arXiv:1903.03934 (2019), +Poly"
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


class FedAsyncConst(FedAsync):
    name = "fedasync-const"
    source = "Xie, Koyejo, Gupta, arXiv:1903.03934 (2019), +Const"
    defaults = {**FedAsync.defaults, "staleness": "constant"}


class FedAsyncHinge(FedAsync):
    name = "fedasync-hinge"
    source = "Xie, Koyejo, Gupta, arXiv:1903.03934 (2019), +Hinge"
    defaults = {**FedAsync.defaults, "staleness": "hinge:a=10,b=4"}
