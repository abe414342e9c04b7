"""Delay traces: per-client timing from which the schedule of arrivals is derived.

A job of client c lasts ``download[c] + compute_mean[c]·J + upload + extra_delay[c]``
where J is the per-job jitter (mean 1, distribution ``jitter[c]`` with shape
``jitter_param[c]``) and the upload time is uniform in ``upload_mean[c] ±
upload_spread[c]``. Per-job randomness comes from a generator keyed by
``(seed, client, job index of that client)``, so a client's k-th job lasts the
same in every method's run, whatever order jobs are dispatched in.

Optional availability windows (imported from device behaviour traces) say when a
client is online: it may be given a job inside a window, and a job still running
when its window closes is dropped (``schedule``).

Generators (``KIND[:k=v,...]``, see ``GENERATORS``):

* ``constant``, ``uniform``, ``exponential``, ``halfnormal`` (FedBuff / FLSim:
  each duration is |N(0, scale)|), ``lognormal``, ``pareto`` (heavy tail): the
  same distribution for every client, the variation is per job.
* ``fedrevive``: FedRevive's CIFAR-10 setup (arXiv 2511.00655; NVFlare
  ``research/fedrevive``): per-client mean compute 1.0/1.3/1.6 with probability
  25/50/25 %, each job Exponential(mean); download 0.1; upload uniform(m ± 0.02)
  with a per-client m drawn equally from 0.15 and 0.25. ``fedrevive-shifted`` is
  its Figure-3 variant: compute mean 0.1, download 0.02, upload m ± 0.01 with m in
  {0.05, 0.10}.
* ``tiers``: fast and slow device classes.
* ``intertwined``: delay intertwined with data (Wang & Gao, "Tackling the
  Unlimited Staleness in Federated Learning with Intertwined Data and Device
  Heterogeneities"): the ``slow`` clients holding most samples of ``classes``
  get an extra delay, per client uniform in [delay_min, delay_max] mean job
  durations of the base trace ("rounds"), on every job (``mode=slow``). With
  ``mode=lag`` (the paper's setting) they keep the base trace's timing and report at
  the normal rate, but train from the server model that many rounds of
  ``concurrency`` arrivals old (``Trace.base_lag``; ``schedule``). Other keys go to the base
  kind; ``base.KEY`` names a base key that clashes with one of intertwined's own
  (``base=tiers,base.slow=8``).

A spec ending in ``.csv`` or ``.parquet`` is read as a trace file (``trace_file``).
"""
from __future__ import annotations

import math

import numpy as np

from asyncfl_bench.errors import UserError
from asyncfl_bench.traces.model import JITTERS, Trace, _per_client
from asyncfl_bench.traces.file import read_trace, read_trace_meta
from asyncfl_bench.config.spec import check_params, parse_spec

FILE_SUFFIXES = (".csv", ".parquet", ".pq")


def _clients(n: int, compute, jitter, download=0.0, upload=0.0, spread=0.0, jitter_param=0.0) -> dict:
    return dict(compute_mean=_per_client(compute, n, float), download=_per_client(download, n, float),
                upload_mean=_per_client(upload, n, float), upload_spread=_per_client(spread, n, float),
                jitter=jitter, jitter_param=jitter_param)


def _constant(n, rng, duration):
    return _clients(n, duration, "constant")


def _uniform(n, rng, low, high):
    if not 0 <= low <= high or high == 0:
        raise UserError(f"trace 'uniform': need 0 <= low <= high and high > 0, got low={low}, high={high}")
    mid = (low + high) / 2
    return _clients(n, mid, "uniform", jitter_param=(high - low) / (high + low))


def _exponential(n, rng, mean):
    return _clients(n, mean, "exponential")


def _halfnormal(n, rng, scale):
    # FedBuff / FLSim: each training duration is |N(0, scale)|; its mean is scale·sqrt(2/π).
    return _clients(n, scale * math.sqrt(2 / math.pi), "halfnormal")


def _lognormal(n, rng, mean, sigma):
    return _clients(n, mean, "lognormal", jitter_param=sigma)


def _pareto(n, rng, mean, shape):
    # This trace is set by its mean (J = (α−1)/α · Pareto_I(α, 1),
    # mean 1), and for α ≤ 1 the mean is infinite: no scale gives it a finite one, so
    # 0 < α ≤ 1 cannot be represented either (the scale would be ≤ 0).
    if shape <= 1:
        raise UserError(f"trace 'pareto': shape={shape}, but this trace is set by its mean job time "
                        f"(mean={mean}) and a Pareto mean is finite only for shape > 1; fix: a shape > 1 "
                        "(close to 1, e.g. 1.1, for the heaviest tail), or lognormal:sigma=... for a heavy "
                        "tail with a finite mean")
    return _clients(n, mean, "pareto", jitter_param=shape)


def _fedrevive(n, rng):
    # FedRevive reference setup: per-client mean compute 1.0/1.3/1.6 (25/50/25 %), each job
    # Exponential(mean); download 0.1; upload uniform(m ± 0.02), m ∈ {0.15, 0.25} equally.
    means = rng.choice([1.0, 1.3, 1.6], size=n, p=[0.25, 0.5, 0.25])
    upload = rng.choice([0.15, 0.25], size=n)
    return _clients(n, means, "exponential", download=0.1, upload=upload, spread=0.02)


def _fedrevive_shifted(n, rng):
    # FedRevive Figure 3 ("shifted" delay schedule): compute mean 0.1, download 0.02,
    # upload uniform(m ± 0.01), m ∈ {0.05, 0.10} equally.
    upload = rng.choice([0.05, 0.10], size=n)
    return _clients(n, 0.1, "exponential", download=0.02, upload=upload, spread=0.01)


def _tiers(n, rng, fast, slow, slow_frac, jitter):
    if jitter not in JITTERS:
        raise UserError(f"trace 'tiers': unknown jitter '{jitter}'; valid: {', '.join(JITTERS)}")
    if not 0 <= slow_frac <= 1:
        raise UserError(f"trace 'tiers': slow_frac must be in [0, 1], got {slow_frac}")
    is_slow = np.zeros(n, dtype=bool)
    is_slow[rng.permutation(n)[:round(slow_frac * n)]] = True
    if jitter == "pareto":
        raise UserError("trace 'tiers': pareto jitter needs a shape; fix: use the pareto kind")
    return _clients(n, np.where(is_slow, slow, fast), jitter,
                    jitter_param=0.5 if jitter in ("uniform", "lognormal") else 0.0)


GENERATORS = {
    "constant": (_constant, {"duration": 1.0}),
    "uniform": (_uniform, {"low": 0.5, "high": 1.5}),
    "exponential": (_exponential, {"mean": 1.0}),
    "halfnormal": (_halfnormal, {"scale": 1.0}),
    "lognormal": (_lognormal, {"mean": 1.0, "sigma": 1.0}),
    "pareto": (_pareto, {"mean": 1.0, "shape": 1.5}),
    "fedrevive": (_fedrevive, {}),
    "fedrevive-shifted": (_fedrevive_shifted, {}),
    "tiers": (_tiers, {"fast": 1.0, "slow": 5.0, "slow_frac": 0.25, "jitter": "exponential"}),
    "intertwined": (None, {"classes": "0", "slow": 10, "delay_min": 10.0, "delay_max": 40.0, "mode": "slow",
                           "base": "exponential"}),
}


# parameters whose generator checks a stricter bound than >= 0 (and names it in its error)
OWN_BOUNDS = {("pareto", "shape")}


def is_trace_file(spec: str) -> bool:
    return isinstance(spec, str) and spec.strip().lower().endswith(FILE_SUFFIXES)


def _parse_classes(value) -> list[int]:
    try:
        classes = [int(p) for p in str(value).split("/") if p.strip()]
    except ValueError:
        raise UserError(f"trace 'intertwined': classes={value!r} is not class ids joined by '/' "
                        "(e.g. classes=3 or classes=3/7)") from None
    if not classes or min(classes) < 0:
        raise UserError(f"trace 'intertwined': classes={value!r} needs one or more ids >= 0")
    return classes


def trace_slow_classes(kind: str, params: dict) -> list[int]:
    """The classes whose holders are delayed, for an intertwined trace (else [])."""
    if kind != "intertwined":
        return []
    return _parse_classes(params.get("classes", GENERATORS["intertwined"][1]["classes"]))


def slow_classes(spec: str) -> list[int]:
    """``trace_slow_classes`` of a spec or trace file, without building the trace."""
    if is_trace_file(spec):
        meta = read_trace_meta(spec)
        return trace_slow_classes(meta.get("kind"), meta.get("params") or {})
    return trace_slow_classes(*parse_spec(spec, "trace"))


def _generate(kind: str, params: dict, num_clients: int, rng: np.random.Generator) -> dict:
    fn, defaults = GENERATORS[kind]
    params = check_params(kind, params, defaults, "trace")
    for key, value in params.items():
        if (kind, key) in OWN_BOUNDS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise UserError(f"trace '{kind}': {key} must be >= 0, got {value}; fix: give a non-negative {key}")
    return params, fn(num_clients, rng, **params)


def _intertwined(params: dict, num_clients: int, rng, class_counts) -> tuple[dict, dict]:
    own = GENERATORS["intertwined"][1]
    mine = check_params("intertwined", {k: v for k, v in params.items() if k in own}, own, "trace")
    base = str(mine["base"]).lower()
    if base not in GENERATORS or base == "intertwined":
        valid = ", ".join(k for k in GENERATORS if k != "intertwined")
        raise UserError(f"trace 'intertwined': unknown base '{base}'; valid: {valid}")
    if class_counts is None:
        raise UserError("trace 'intertwined' needs each client's class counts (it delays the clients "
                        "holding the chosen classes); fix: use it in a run, or pass class counts")
    counts = np.asarray(class_counts)
    if counts.shape != (num_clients, counts.shape[-1]) or counts.ndim != 2:
        raise UserError(f"trace 'intertwined': class counts must be ({num_clients}, num_classes), "
                        f"got shape {counts.shape}")
    classes = _parse_classes(mine["classes"])
    if max(classes) >= counts.shape[1]:
        raise UserError(f"trace 'intertwined': class {max(classes)} does not exist; "
                        f"the task has classes 0..{counts.shape[1] - 1}")
    slow = int(mine["slow"])
    if not 0 <= slow <= num_clients:
        raise UserError(f"trace 'intertwined': slow must be between 0 and {num_clients}, got {slow}")
    mode = str(mine["mode"]).lower()
    if mode not in ("slow", "lag"):
        raise UserError(f"trace 'intertwined': unknown mode '{mine['mode']}'; valid: slow (the delayed clients' "
                        f"jobs last longer), lag (they train from an older model, the paper's setting)")
    if not 0 <= mine["delay_min"] <= mine["delay_max"]:
        raise UserError("trace 'intertwined': need 0 <= delay_min <= delay_max, got "
                        f"{mine['delay_min']}..{mine['delay_max']}")
    # the base kind gets every other key; ``base.KEY`` reaches a base key that shares a
    # name with one of intertwined's own (tiers' ``slow``)
    given = {k: v for k, v in params.items() if k not in own and not k.startswith("base.")}
    given.update({k[len("base."):]: v for k, v in params.items() if k.startswith("base.")})
    base_params, fields = _generate(base, given, num_clients, rng)
    held = counts[:, classes].sum(axis=1)
    slow_ids = np.argsort(-held, kind="stable")[:slow]          # ties: lower client id first
    rounds = np.zeros(num_clients)
    rounds[slow_ids] = rng.uniform(mine["delay_min"], mine["delay_max"], size=slow)
    unit = float(np.mean(fields["download"] + fields["compute_mean"] + fields["upload_mean"]))
    if mode == "lag":
        fields["base_lag"] = rounds
    else:
        fields["extra_delay"] = rounds * unit
    meta = {"slow_clients": sorted(int(c) for c in slow_ids), "round_seconds": unit,
            "base_params": base_params}
    return {**mine, **{("base." + k if k in own else k): v for k, v in base_params.items()}}, dict(fields, meta=meta)


def make_trace(spec: str, num_clients: int, seed: int, class_counts=None) -> Trace:
    """Generate a trace from ``KIND[:k=v,...]`` for ``num_clients`` clients, or read a
    trace file (``*.csv`` / ``*.parquet``). ``class_counts`` ((clients, classes) ints)
    is needed by ``intertwined`` only."""
    if is_trace_file(spec):
        trace = read_trace(spec)
        if trace.num_clients != num_clients:
            raise UserError(f"trace file {spec} has {trace.num_clients} clients but the run has "
                            f"{num_clients}; fix: --set num_clients={trace.num_clients}")
        return trace
    kind, params = parse_spec(spec, "trace")
    if kind not in GENERATORS:
        raise UserError(f"unknown trace kind '{kind}'; valid: {', '.join(GENERATORS)}")
    rng = np.random.default_rng([seed, 0x7ACE])
    if kind == "intertwined":
        params, fields = _intertwined(params, num_clients, rng, class_counts)
    else:
        params, fields = _generate(kind, params, num_clients, rng)
    return Trace(kind=kind, params=params, seed=seed, **fields)


def check_spec(spec: str, num_clients: int) -> None:
    """Fail fast on a bad trace spec or file, before any run starts (builds it once against
    a dummy partition, so intertwined's parameters are checked too)."""
    counts = np.ones((num_clients, max(slow_classes(spec), default=0) + 1), dtype=np.int64)
    make_trace(spec, num_clients, 0, counts)
