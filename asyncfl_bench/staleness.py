"""Staleness weighting functions s(τ), shared by every method that discounts late updates.

* ``constant``            s(τ) = 1
* ``polynomial:a=0.5``    s(τ) = (1 + τ)^(−a)                          (Xie et al. 2019, FedAsync)
* ``hinge:a=10,b=4``      s(τ) = 1 if τ ≤ b else 1 / (a(τ − b) + 1)    (Xie et al. 2019, FedAsync)
* ``sqrt``                s(τ) = 1 / sqrt(1 + τ)                       (Nguyen et al. 2022, FedBuff)
"""
from __future__ import annotations

import math
from typing import Callable

from asyncfl_bench.errors import UserError
from asyncfl_bench.config.spec import check_params, parse_spec

KINDS: dict[str, dict] = {
    "constant": {},
    "polynomial": {"a": 0.5},
    "hinge": {"a": 10.0, "b": 4.0},
    "sqrt": {},
}


def constant(tau: int) -> float:
    return 1.0


def polynomial(tau: int, a: float = 0.5) -> float:
    return (1.0 + tau) ** (-a)


def hinge(tau: int, a: float = 10.0, b: float = 4.0) -> float:
    return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)


def sqrt(tau: int) -> float:
    return 1.0 / math.sqrt(1.0 + tau)


def make_staleness(spec: str) -> Callable[[int], float]:
    """Build s(τ) from a spec string such as ``hinge:a=10,b=4``."""
    kind, params = parse_spec(spec, "staleness function")
    if kind not in KINDS:
        raise UserError(f"unknown staleness function '{kind}'; valid: {', '.join(KINDS)}")
    params = check_params(kind, params, KINDS[kind], "staleness function")
    fn = {"constant": constant, "polynomial": polynomial, "hinge": hinge, "sqrt": sqrt}[kind]
    return lambda tau: fn(tau, **params)
