"""MIFA: memory-augmented impatient federated averaging.

Gu, Huang, Zhang, Huang. "Fast Federated Learning in the Presence of Arbitrary Device
Unavailability". NeurIPS 2021, Algorithm 1; official code hmgxr128/MIFA_code
(``src/trainers/fdu.py``). The server keeps every client's latest update G_i and each
round applies their average over ALL N clients, so a client that cannot report still
counts with what it last sent:

    G_i ← (x_i − x_t)/η_t for the clients that reported;   x_{t+1} = x_t + η_t·(1/N)·Σ_i G_i

Asynchronously a round is the buffer's K arrivals (``aggregation.BufferedMethod``): each
arrival replaces G_i by its Δ_i (against the model it started from), and every K
arrivals x ← x + η_g·(1/N)·Σ_i G_i. The table is ``aggregation.LatestPerClient``, the
store CA2FL caches in: per flush this is CA2FL's rule with 1/N instead of 1/M on the
round's Σ(Δ_i − G_i^old).

Defaults and choices:

* Unseen clients count zero and the divisor stays N (``unseen=zero``: the code's
  ``fdu_no_wait``, which starts the table from zeros; its ``fdu`` first waits for every
  client and trains all N once, which a shared schedule cannot do). ``unseen=exclude``
  averages the filled entries only (FLGo's ``mifa.py``).
* Stored as Δ_i, not Δ_i/η_t: the code divides by η_t = η_0/(t + 1) so that stale
  entries are rescaled to the current rate; the suite's clients train at the task's
  constant rate, where both forms are the same update. η_g = 1 is MIFA's implicit
  server rate.
* K = 10 as FedBuff's (ci presets 5): an entry stays in the table for about N arrivals,
  i.e. N/K flushes at weight 1/N, so each Δ_i is applied about 1/K in total, FedBuff's
  per-arrival share at η_g = 1. No staleness weight (MIFA has none).
"""
from __future__ import annotations

import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.aggregation import BufferedMethod, LatestPerClient


class MIFA(BufferedMethod):
    name = "mifa"
    source = "Gu et al., NeurIPS 2021 (Alg. 1; hmgxr128/MIFA_code)"
    defaults = {
        "buffer_size": 10,      # K arrivals per server step
        "server_lr": 1.0,       # η_g (MIFA's is implicitly 1)
        "unseen": "zero",       # zero: ÷N, unseen count 0 (fdu_no_wait) | exclude: ÷ filled entries
    }
    search_space = {"server_lr": "log:low=0.1,high=5.0"}
    UNSEEN = ("zero", "exclude")

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        if self.hp.unseen not in self.UNSEEN:
            raise UserError(f"unknown mifa.unseen '{self.hp.unseen}'; valid: {', '.join(self.UNSEEN)}")
        self.table = LatestPerClient(params.shape)      # G_i, on the CPU; Σ_i G_i in float64

    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        """G_i ← Δ_i; the buffer only counts the round's arrivals (the table is what is applied)."""
        delta = update.delta
        self.table.update(update.client, delta)
        return delta

    def aggregate(self) -> torch.Tensor:
        """(1/N)·Σ_i G_i over the whole table."""
        n = self.ctx.num_clients if self.hp.unseen == "zero" else len(self.table)
        return (self.table.total / n).to(self.params.device, self.params.dtype)

    def server_state(self) -> dict:
        return {**super().server_state(), "table": self.table.state()}

    def load_server_state(self, state: dict) -> None:
        super().load_server_state(state)
        self.table.load(state["table"])
