"""Parse compact specs such as ``hinge:a=10,b=4`` or ``exponential:mean=1.5``.

One grammar for everything that is "a kind plus a few numbers" (staleness
functions, traces, schedules of β): ``KIND[:key=value[,key=value...]]``.
"""
from __future__ import annotations

from asyncfl_bench.errors import UserError


def parse_value(text: str):
    """Turn a string into bool, int, float or leave it a string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str, what: str = "spec") -> tuple[str, dict]:
    """Split ``kind:k=v,k=v`` into ``(kind, {k: v})``."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"empty {what}; write KIND or KIND:key=value,...")
    kind, _, rest = spec.strip().partition(":")
    params: dict = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"bad {what} '{spec}': '{item}' is not key=value")
        params[key.strip()] = parse_value(value)
    return kind.strip().lower(), params


def check_params(kind: str, params: dict, allowed: dict, what: str) -> dict:
    """Fill defaults and reject unknown keys, naming the valid ones."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        valid = ", ".join(sorted(allowed)) or "none"
        raise UserError(f"{what} '{kind}' has no parameter {unknown[0]!r}; valid: {valid}")
    out = dict(allowed)
    for key, value in params.items():
        default = allowed[key]
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{what} '{kind}': {key} must be a number, got {value!r}")
            value = type(default)(value) if isinstance(default, float) else value
        out[key] = value
    return out
