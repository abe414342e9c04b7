"""FedBuff: buffered asynchronous aggregation.

Nguyen, Malik, Zhan, Yousefpour, Rabbat, Malek, Huba. "Federated Learning with
Buffered Asynchronous Aggregation". AISTATS 2022.

Algorithm 1: the server buffers K client deltas, each scaled by s(τ) = 1/sqrt(1+τ),
then takes a server step x ← x + η_g · (1/K)·Σ s(τ_i)·Δ_i and bumps the version
(``aggregation.BufferedMethod``, the loop every buffered method here shares).
Defaults follow Meta's FLSim reference configuration (K = 10, server SGD lr 0.7
with momentum 0.9); presets override them for small runs and say so.
"""
from __future__ import annotations

from asyncfl_bench.methods.aggregation import BufferedMethod


class FedBuff(BufferedMethod):
    name = "fedbuff"
    source = "Nguyen et al., AISTATS 2022"
    defaults = {
        "buffer_size": 10,          # K
        "server_lr": 0.7,           # η_g
        "server_momentum": 0.9,
        "staleness": "sqrt",        # s(τ) = 1/sqrt(1+τ)
        "weight_by_samples": False, # the paper averages deltas uniformly
    }
    # up to 10: FLSim applies its 0.7 to the sum of K = 10 deltas, 7 on our mean (see above)
    search_space = {"server_lr": "log:low=0.1,high=10.0"}
