"""AFL-DW: asynchronous FL with staleness down-weighting, FedRevive's control arm.

The FedRevive authors' control (their code: ``server.handle_upload_event``, the
``async_downweighting`` branch, and ``downweight_update_based_on_staleness``; config
``afl_dw.json``): every arrival contributes u_i = (1 − β(τ))·Δ_i with FedRevive's own
β(τ) and buffered aggregation, and no distillation. It is FedRevive with Δ^KD = 0 and
no freeze gate, so a FedRevive run set against it shows what the distillation adds
beyond FedRevive's raw step (``fedrevive`` subclasses this method; with
``distillation=False`` it takes this update, bit for bit).

Settings:

| setting | value | source | departure |
|---|---|---|---|
| B (``buffer_size``) | 1 | authors' ``afl_dw.json``, ``async_fl_settings.buffer_size`` (METHODS.md) | none |
| η_g (``server_lr``) | 0.1 | authors' ``afl_dw.json``, ``server_lr`` (METHODS.md) | none |
| β(τ) (``beta``) | cosine, s_max = auto | authors' ``calculate_adaptive_beta`` → ``_cosine_decay`` with ``dfkd_settings.adaptive_beta_factor`` = 75 | s_max from the run: its median staleness (``fedrevive/scale.py``; 73 on the paper preset's schedule, whose presets set 75) |
| gates | none: β applies from the first arrival | ``async_downweighting`` branch has no ``freeze_rounds`` check | none |

The JSON configs themselves were not readable here; the values are those recorded in
the project notes (METHODS.md) from them, and the key names are the ones the authors' server
reads (``config[algorithm + "_settings"]["buffer_size"]``, ``config["server_lr"]``).

Step size: x ← x + η_g·mean(u) over B arrivals (``aggregation.BufferedMethod``), the
authors' ``add_update_to_params`` with server_lr on the mean of the buffer; one arrival
moves the model by η_g·(1 − β(τ))·Δ_i. s_max follows the run's staleness as FedRevive's
does (``s_max=auto``); the paper presets set the authors' 75.
"""
from __future__ import annotations

import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.aggregation import BufferedMethod
from asyncfl_bench.methods.fedrevive.beta import make_beta, resolve_auto
from asyncfl_bench.methods.fedrevive.scale import auto_s_max


def downweighted(delta: torch.Tensor, beta: float) -> torch.Tensor:
    """(1 − β)·Δ, the authors' ``downweight_update_based_on_staleness``."""
    return (1 - beta) * delta


class AFLDW(BufferedMethod):
    name = "afl-dw"
    source = "FedRevive's control, arXiv 2511.00655 (2025)"
    defaults = {
        "buffer_size": 1,              # B, afl_dw.json
        "server_lr": 0.1,              # η_g, afl_dw.json
        # β(τ), dfkd_settings.beta = cosine; s_max (adaptive_beta_factor, 75 in the authors'
        # configs) from the run's schedule: its median staleness (fedrevive/scale.py)
        "beta": "cosine:s_max=auto",
    }
    search_space = {"server_lr": "log:low=0.01,high=1.0"}

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        # the spec as run: s_max=auto resolved from the run's schedule (scale.auto_s_max)
        self.beta_spec = resolve_auto(self.hp.beta, lambda: auto_s_max(ctx, self.hp.buffer_size))
        self.beta = make_beta(self.beta_spec)
        self.beta_log = {"beta_sum": 0.0, "arrivals": 0}

    def contribution(self, update: ClientUpdate) -> torch.Tensor:
        beta = self.beta(update.staleness)
        self.beta_log["beta_sum"] += beta
        self.beta_log["arrivals"] += 1
        return downweighted(update.delta, beta)

    def metrics(self) -> dict:
        mean_beta = self.beta_log["beta_sum"] / max(self.beta_log["arrivals"], 1)
        return {"mean_beta": mean_beta, "resolved": {"beta": self.beta_spec},
                "diagnostics": {"mean_beta": mean_beta}}

    def server_state(self) -> dict:
        return {**super().server_state(), "beta_log": dict(self.beta_log)}

    def load_server_state(self, state: dict) -> None:
        super().load_server_state(state)
        self.beta_log = dict(state["beta_log"])
