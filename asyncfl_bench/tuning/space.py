"""Search spaces: which of a method's hyperparameters a tune samples, and over what range.

A method declares them next to its ``defaults``, in the suite's spec grammar::

    search_space = {"server_lr": "log:low=0.1,high=5.0"}

``log`` samples log-uniformly (rates and loss weights, whose effect scales with
their magnitude), ``uniform`` linearly. A parameter whose default is an int is
sampled over the integers of the range. ``tune --space METHOD.PARAM=SPEC`` adds
or replaces one dimension for a tune; either way only the method's own parameters
can be named, so local training stays the task preset's, equal for all methods.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from asyncfl_bench.config.spec import parse_spec
from asyncfl_bench.errors import UserError

KINDS = ("log", "uniform")


@dataclass(frozen=True)
class Dimension:
    """One sampled hyperparameter: ``low`` ≤ value ≤ ``high``."""

    name: str
    low: float
    high: float
    log: bool
    integer: bool

    @property
    def spec(self) -> str:
        """The canonical spec (recorded in the tuned file and the study's identity)."""
        return f"{'log' if self.log else 'uniform'}:low={self.low!r},high={self.high!r}"


def parse_dimension(method: str, name: str, spec, defaults: dict) -> Dimension:
    """Check ``spec`` for ``method.name`` against the method's parameters and their types."""
    where = f"search space {method}.{name}"
    if name not in defaults:
        raise UserError(f"{where}: method '{method}' has no parameter '{name}'; valid: "
                        f"{', '.join(sorted(defaults)) or 'none'}; fix: name one of them "
                        f"(see `asyncfl-bench list --params`)")
    default = defaults[name]
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        raise UserError(f"{where}: '{name}' is {type(default).__name__} (default {default!r}); only "
                        f"numeric parameters can be tuned; fix: pin it with --set {method}.{name}=VALUE")
    kind, params = parse_spec(spec, where) if isinstance(spec, str) else ("", {})
    if kind not in KINDS or set(params) != {"low", "high"}:
        raise UserError(f"{where}: '{spec}' is not KIND:low=L,high=H with KIND one of {', '.join(KINDS)}; "
                        f"fix: e.g. log:low=0.1,high=5")
    low, high = params["low"], params["high"]
    integer = isinstance(default, int)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
    if not numbers or not low < high or (kind == "log" and low <= 0):
        raise UserError(f"{where}: need finite numbers low < high{' and low > 0 (log scale)' if kind == 'log' else ''}, "
                        f"got low={low!r}, high={high!r}; fix: e.g. {kind}:low=0.1,high=5")
    if integer and not (float(low).is_integer() and float(high).is_integer()):
        raise UserError(f"{where}: '{name}' is an integer parameter, so low and high must be integers; "
                        f"got {low!r}, {high!r}")
    cast = int if integer else float
    return Dimension(name, cast(low), cast(high), kind == "log", integer)


def method_space(method_cls, extra: dict[str, str] | None = None) -> dict[str, Dimension]:
    """The method's declared space with ``extra`` specs (from ``--space``) added or replacing,
    every dimension checked against the method's parameters."""
    specs = {**method_cls.search_space, **(extra or {})}
    if not specs:
        raise UserError(f"method '{method_cls.name}' declares no search space; fix: give one with "
                        f"--space {method_cls.name}.PARAM=log:low=L,high=H")
    return {name: parse_dimension(method_cls.name, name, spec, method_cls.defaults)
            for name, spec in sorted(specs.items())}


def parse_space_options(items: list[str], method_names: list[str]) -> dict[str, dict[str, str]]:
    """``--space METHOD.PARAM=SPEC`` items → {method: {param: spec}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, eq, spec = item.partition("=")
        method, dot, param = key.strip().partition(".")
        if not eq or not dot or not param:
            raise UserError(f"--space '{item}' is not METHOD.PARAM=SPEC; fix: e.g. "
                            f"--space fedbuff.server_lr=log:low=0.1,high=3")
        if method not in method_names:
            raise UserError(f"--space {key}: '{method}' is not a method of this tune; valid: "
                            f"{', '.join(method_names)}")
        out.setdefault(method, {})[param.strip()] = spec.strip()
    return out


def as_overrides(method: str, params: dict) -> dict[str, str]:
    """Sampled values as ``--set METHOD.PARAM=VALUE`` overrides (``repr`` round-trips floats exactly)."""
    return {f"{method}.{name}": repr(value) for name, value in params.items()}
