"""Asynchronous FedOpt: FedBuff's buffer feeding a server Adam, Yogi or Adagrad step.

Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar, McMahan. "Adaptive Federated
Optimization". ICLR 2021, Algorithm 2 (FedAdagrad / FedYogi / FedAdam), run on FedBuff's
buffer (Nguyen et al., AISTATS 2022, Alg. 1) instead of a synchronous round: every K
arrivals the server forms Δ = (1/K)·Σ s(τ_i)·Δ_i and takes the adaptive step
(``aggregation.AdaptiveServerOptimizer``):

    m ← β1·m + (1 − β1)·Δ;  v ← Adagrad | Yogi | Adam rule on Δ²;  x ← x + η·m/(√v + τ)

This is the adaptive baseline FADAS (Wang et al., ICML 2024) is measured against, and the
form of FLSim's ``FedAdamHybridAggregator`` (``flsim/optimizers/async_aggregators.py``:
``buffer_size`` deltas, one torch Adam step per flush). Clients are unchanged.

Defaults and where they come from:

* ``kind`` adam; η = 1e-2 (Flower's FedYogi; the paper's best FedAdam/FedYogi server rates
  lie in 10^-2.5 … 1, google-research/federated ``optimization/`` docs); τ = ``eps`` 1e-3
  (the authors' recommended starting adaptivity); β1 0.9, β2 0.99 (Flower's FedAdam and
  FedYogi; the authors' runs left Keras' 0.999, settable with ``beta2``).
* No bias correction (Alg. 2 as written) and v₀ = 0 (the authors' runs; Alg. 2's v₋₁ ≥ τ²
  is a 1e-6 floor that matters only where |Δ| ≲ τ, where τ dominates √v + τ anyway):
  ``bias_correction=true`` gives the authors' Keras Adam and Flower's FedAdam.
* The same β1 for all three kinds, as Alg. 2 writes it; the authors' Keras Adagrad and
  Flower's FedAdagrad run without momentum, i.e. ``beta1=0``.
* s(τ) constant: Alg. 2 has no staleness weight and FLSim's hybrid aggregator's default
  async weight is constant; ``staleness=sqrt`` gives FedBuff's.

Step size, against the suite's convention (``aggregation`` module docstring): Δ is the
MEAN of the buffer, as in Alg. 2 (Δ_t = (1/|S|)·Σ Δ_i); the adaptive step is scale-free
in Δ once |m| ≫ τ, so each server step moves a coordinate by about η, whatever K is.
The ci presets give it the K = 5 every buffered method gets there.
"""
from __future__ import annotations

from asyncfl_bench.methods.aggregation import AdaptiveServerOptimizer, BufferedMethod


class FedOpt(BufferedMethod):
    name = "fedopt"
    source = "Reddi et al., ICLR 2021 (Alg. 2) on FedBuff's buffer"
    defaults = {
        "kind": "adam",             # adam | yogi | adagrad
        "buffer_size": 10,          # K, as FedBuff's
        "server_lr": 1e-2,          # η
        "beta1": 0.9,
        "beta2": 0.99,
        "eps": 1e-3,                # τ, the adaptivity
        "bias_correction": False,   # Alg. 2: none; the authors' Keras Adam: true
        "staleness": "constant",    # s(τ) inside the buffer's mean
        "weight_by_samples": False,
    }
    # the paper's grid: server rate and adaptivity (the client rate is the task's)
    search_space = {"server_lr": "log:low=1e-3,high=1.0", "eps": "log:low=1e-5,high=1e-1"}

    def server_optimizer(self) -> AdaptiveServerOptimizer:
        hp = self.hp
        return AdaptiveServerOptimizer(hp.server_lr, hp.kind, hp.beta1, hp.beta2, hp.eps,
                                       bias_correction=hp.bias_correction)
