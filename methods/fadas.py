"""FADAS: federated adaptive asynchronous optimisation with a delay-adaptive server rate.

Wang, Wang, Lu, Chen. "FADAS: Towards Federated Adaptive Asynchronous Optimization".
ICML 2024, Algorithm 1; official code yujiaw98/FADAS (``update.py``, optimizer ``fedams``;
``g_delay_adaptive.py``). Every M arrivals the server takes one AMSGrad step on the
buffer's mean Δ̄ = (1/M)·Σ Δ_i (``aggregation.AdaptiveServerOptimizer`` with
``amsgrad``):

    m ← β1·m + (1 − β1)·Δ̄;  v ← β2·v + (1 − β2)·Δ̄²;  v̂ ← max(v̂, v)
    x ← x + η_t·m / (√v̂ + ε)

and the delay-adaptive rate reads the largest staleness in the buffer, τ_max:

    η_t = η / τ_max   if τ_max > τ_c,   else η                    (``delay_rule=scale``)

which is ``g_delay_adaptive.py``'s rule and the default. A third-party summary of the
paper writes η_t = min(η, 1/τ_max) instead (``delay_rule=cap``); the paper's own
equation could not be read here, so both are offered and the authors' code decides
the default. ``delay_adaptive=false`` is plain FADAS (η_t = η).

Defaults (``options.py`` and the README's commands): β1 0.9, β2 0.99, ε 1e-8, M 5,
τ_c 1, η 1e-3 with the delay-adaptive rate (the README's plain run uses 1e-4). The
official code bias-corrects Adam's moments (step η_t/(1 − β1^t) on
m/(√v̂/√(1 − β2^t) + ε), t the version plus one) and starts v̂ at 0 (``max_init``):
``bias_correction`` is on by default for that reason. No staleness weight inside the
mean (the delay enters only through η_t); clients are the task's plain local SGD.

Departures: the official code averages BN buffers as a plain mean of the M clients'
state dicts and, after version 0, starts all but the last new client from the previous
version while taking Δ against the current one; here every client's Δ is against the
model it was dispatched, as in every method of the suite (the shared schedule).
"""
from __future__ import annotations

from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.aggregation import AdaptiveServerOptimizer, BufferedMethod


def delay_adaptive_scale(tau_max: int, tau_c: float, rule: str, lr: float) -> float:
    """η_t / η for the buffer's largest staleness τ_max (see the module docstring)."""
    if rule == "scale":
        return 1.0 / tau_max if tau_max > tau_c else 1.0
    return min(lr, 1.0 / tau_max) / lr if tau_max > 0 else 1.0


class FADAS(BufferedMethod):
    name = "fadas"
    source = "Wang et al., ICML 2024 (Alg. 1; yujiaw98/FADAS)"
    defaults = {
        "buffer_size": 5,           # M, the code's update_freq
        "server_lr": 1e-3,          # η (delay-adaptive runs; 1e-4 in the plain run)
        "beta1": 0.9,
        "beta2": 0.99,
        "eps": 1e-8,
        "bias_correction": True,    # the official code's Adam correction
        "delay_adaptive": True,
        "tau_c": 1,                 # delay threshold τ_c
        "delay_rule": "scale",      # scale: η/τ_max (code) | cap: min(η, 1/τ_max)
        "weight_by_samples": False,
    }
    # the authors tune the global rate (1e-4 plain, 1e-3 delay-adaptive in their README)
    search_space = {"server_lr": "log:low=1e-5,high=1e-1"}
    RULES = ("scale", "cap")

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        if self.hp.delay_rule not in self.RULES:
            raise UserError(f"unknown fadas.delay_rule '{self.hp.delay_rule}'; valid: {', '.join(self.RULES)}")
        if self.hp.tau_c < 0:
            raise UserError(f"fadas.tau_c must be ≥ 0, got {self.hp.tau_c}; fix: --set fadas.tau_c=1")

    def server_optimizer(self) -> AdaptiveServerOptimizer:
        hp = self.hp
        return AdaptiveServerOptimizer(hp.server_lr, "adam", hp.beta1, hp.beta2, hp.eps,
                                       amsgrad=True, bias_correction=hp.bias_correction)

    def lr_scale(self) -> float:
        if not self.hp.delay_adaptive:
            return 1.0
        return delay_adaptive_scale(max(self.agg.staleness), self.hp.tau_c, self.hp.delay_rule, self.hp.server_lr)
