"""Schedules β(τ) of FedRevive's hybrid update u = (1 − β(τ))·Δ + β(τ)·Δ^KD.

* ``cosine:s_max=75``        β = 1 − ½(1 + cos(π τ / (2 s_max))) for τ ≤ 2 s_max, else 1
                             (the paper's schedule: 0 when fresh, ½ at s_max, 1 at 2 s_max);
                             ``cosine:s_max=auto``: s_max from the run's schedule (``scale.auto_s_max``)
* ``fixed:value=0.5``        β = value (``fixed:0.5`` also works)
* ``linear:gamma=0.005``     β = min(1, γ τ)
* ``exponential:lam=0.005``  β = 1 − exp(−λ τ)
* ``step:base=150``          β = 0, ¼, ½, ¾, 1 as τ passes base/4, base/2, 3·base/4, base
                             (the reference sets base = 1.5 × concurrency / buffer size)

All but ``cosine`` are the reference code's ablation alternatives.
"""
from __future__ import annotations

import math
from typing import Callable

from asyncfl_bench.errors import UserError
from asyncfl_bench.config.spec import check_params, parse_spec

KINDS: dict[str, dict] = {
    "cosine": {"s_max": 75.0},
    "fixed": {"value": 0.5},
    "linear": {"gamma": 0.005},
    "exponential": {"lam": 0.005},
    "step": {"base": 150.0},
}


def cosine(tau: float, s_max: float) -> float:
    if tau > 2 * s_max:
        return 1.0
    return min(1.0, max(0.0, 1.0 - 0.5 * (1.0 + math.cos(math.pi * tau / (2.0 * s_max)))))


def step(tau: float, base: float) -> float:
    for i, frac in enumerate((0.25, 0.5, 0.75, 1.0)):
        if tau < base * frac:
            return i / 4
    return 1.0


FUNCTIONS = {
    "cosine": cosine,
    "fixed": lambda tau, value: value,
    "linear": lambda tau, gamma: min(1.0, max(0.0, gamma * tau)),
    "exponential": lambda tau, lam: min(1.0, max(0.0, 1.0 - math.exp(-lam * tau))),
    "step": step,
}


def resolve_auto(spec: str, s_max: Callable[[], float]) -> str:
    """The spec with ``s_max=auto`` replaced by the value ``s_max()`` gives (any other spec
    as it is): ``cosine:s_max=auto`` → ``cosine:s_max=6``."""
    kind, _, rest = str(spec).strip().partition(":")
    if kind.strip().lower() != "cosine" or "=" not in rest:
        return spec
    _, params = parse_spec(spec, "β schedule")
    if str(params.get("s_max")).lower() != "auto":
        return spec
    params["s_max"] = s_max()
    return "cosine:" + ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def make_beta(spec: str) -> Callable[[int], float]:
    """Build β(τ) from a spec such as ``cosine:s_max=75`` or ``fixed:0.5`` (``s_max=auto``
    must be resolved first: ``resolve_auto``)."""
    kind, _, rest = str(spec).strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise UserError(f"unknown β schedule '{kind}'; valid: {', '.join(KINDS)} (e.g. cosine:s_max=75, fixed:0.5)")
    if rest.strip() and "=" not in rest:   # positional form: fixed:0.5
        spec = f"{kind}:{next(iter(KINDS[kind]))}={rest.strip()}"
    kind, params = parse_spec(spec, "β schedule")
    params = check_params(kind, params, KINDS[kind], "β schedule")
    if kind == "fixed" and not 0.0 <= params["value"] <= 1.0:
        raise UserError(f"β schedule fixed:{params['value']}: value must be in [0, 1]")
    if kind == "cosine" and params["s_max"] <= 0:
        raise UserError("β schedule cosine: s_max must be > 0")
    fn = FUNCTIONS[kind]
    return lambda tau: float(fn(tau, **params))
