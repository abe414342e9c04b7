"""FedAvg in synchronous rounds: the no-staleness reference.

McMahan, Moore, Ramage, Hampson, Agüera y Arcas. "Communication-Efficient
Learning of Deep Networks from Decentralized Data". AISTATS 2017.

Each round the schedule starts ``concurrency`` clients on the same model and
the round ends when the slowest returns (same trace, same per-job durations as
the asynchronous methods). The server then sets x ← x + η·Σ (n_i/n)·Δ_i, which
with η = 1 is the paper's x ← Σ (n_i/n)·x_i. On a trace with availability windows
a round can lose clients that go offline mid-job; it then averages the updates
that arrived (the schedule marks each round's last arrival).

Step size, audited against the paper: Alg. 1 (FederatedAveraging) sets
w ← Σ_k (n_k/m_t)·w_k over the round's clients, i.e. η = 1 on the per-SAMPLE weighted
MEAN of their deltas. Here: ``server_lr`` = 1.0 with ``weight_by_samples``, the mean
of ``aggregation.UpdateBuffer``: factor 1. No task preset overrides fedavg-sync. The
paper preset does not take over FedRevive's reference FedAvg baseline (NVIDIA/NVFlare
``research/fedrevive/fedrevive.py``: K = B = 100, η = 1.4 on the uniform mean; with
350 samples per client uniform and n_i weights coincide): η stays McMahan et al.'s 1.
"""
from __future__ import annotations

import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.aggregation import BufferedMethod


class FedAvgSync(BufferedMethod):
    name = "fedavg-sync"
    source = "McMahan et al., AISTATS 2017"
    synchronous = True
    defaults = {
        "server_lr": 1.0,            # η = 1: plain FedAvg
        "weight_by_samples": True,   # n_i / n, as in the paper
    }
    search_space = {"server_lr": "log:low=0.1,high=5.0"}

    # the buffer is the round: raw deltas (no staleness within a round), n_i-weighted
    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        return update.delta

    def round_ends(self, update: ClientUpdate) -> bool:
        return update.ends_round
