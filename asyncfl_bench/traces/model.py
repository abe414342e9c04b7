"""The Trace model: per-client timing, job durations, availability windows."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from asyncfl_bench.errors import UserError


JITTERS = ("constant", "uniform", "exponential", "halfnormal", "lognormal", "pareto")


def _per_client(value, n: int, dtype) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()


@dataclass(frozen=True, eq=False)
class Trace:
    kind: str
    params: dict
    compute_mean: np.ndarray          # per-client mean compute seconds per job
    download: np.ndarray              # per-client seconds
    upload_mean: np.ndarray           # per-client seconds
    upload_spread: np.ndarray         # per-client half-width of the uniform upload time
    jitter: np.ndarray | str = "constant"    # per-client distribution of J (mean 1)
    jitter_param: np.ndarray | float = 0.0   # its shape: uniform half-width, lognormal σ, pareto shape
    extra_delay: np.ndarray | float = 0.0    # per-client seconds added to every job
    # per-client rounds by which a job's base lags (delayed-base mode: the client trains from
    # the model as it stood base_lag·concurrency arrivals before its dispatch; ``schedule``)
    base_lag: np.ndarray | float = 0.0
    availability: tuple | None = None        # per client: (k, 2) array of [start, end] windows, or None
    period: np.ndarray | float = 0.0         # per-client period of the windows (0: not periodic)
    seed: int | None = None                  # the generator's seed (None: not generated)
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        n = len(self.compute_mean)
        for name in ("compute_mean", "download", "upload_mean", "upload_spread", "jitter_param",
                     "extra_delay", "period", "base_lag"):
            object.__setattr__(self, name, _per_client(getattr(self, name), n, float))
        if not (np.isfinite(self.base_lag).all() and (self.base_lag >= 0).all()):
            raise UserError(f"base_lag must be finite and >= 0 rounds for every client, got {self.base_lag.tolist()}")
        object.__setattr__(self, "jitter", _per_client(self.jitter, n, object))
        bad = sorted(set(self.jitter) - set(JITTERS))
        if bad:
            raise UserError(f"unknown jitter '{bad[0]}'; valid: {', '.join(JITTERS)}")
        if self.availability is not None and len(self.availability) != n:
            raise UserError(f"availability has {len(self.availability)} entries for {n} clients")

    @property
    def num_clients(self) -> int:
        return len(self.compute_mean)

    def _jitter(self, client: int, rng: np.random.Generator) -> float:
        kind, p = self.jitter[client], self.jitter_param[client]
        if kind == "exponential":
            return rng.exponential(1.0)
        if kind == "halfnormal":
            return abs(rng.standard_normal()) * math.sqrt(math.pi / 2)
        if kind == "uniform":
            return 1.0 + p * (2 * rng.random() - 1)
        if kind == "lognormal":
            return math.exp(p * rng.standard_normal() - p * p / 2)
        if kind == "pareto":
            # Pareto I with shape p and scale (p-1)/p has mean 1.
            return (p - 1) / p * (1.0 + rng.pareto(p))
        return 1.0

    def duration(self, client: int, k: int, seed: int) -> float:
        """Seconds of the k-th job of ``client`` (keyed randomness, method-independent)."""
        rng = np.random.default_rng([seed, client, k])
        upload = self.upload_mean[client] + self.upload_spread[client] * (2 * rng.random() - 1)
        return float(self.download[client] + self.compute_mean[client] * self._jitter(client, rng)
                     + upload + self.extra_delay[client])

    def mean_duration(self) -> np.ndarray:
        """Expected seconds of one job, per client."""
        return self.download + self.compute_mean + self.upload_mean + self.extra_delay

    # --- availability -----------------------------------------------------------------
    def next_available(self, client: int, t: float, startable: bool = False) -> float:
        """The first time >= t at which ``client`` is online (inf: never again). With
        ``startable``, windows are half-open [start, end): the first time a job can start
        without its client leaving at that same instant (zero-length windows never)."""
        if self.availability is None:
            return t
        windows, period = self.availability[client], self.period[client]
        if windows is None:
            return t
        if startable:
            windows = [(s, e) for s, e in windows if e > s]
        if len(windows) == 0:
            return math.inf
        base, u = _phase(t, period)
        for start, end in windows:
            if start <= u < end or (u == end and not startable):
                return t
            if start > u:
                return base + start
        return base + period + windows[0][0] if period > 0 else math.inf

    def available(self, client: int, t: float) -> bool:
        return self.next_available(client, t) == t

    def _window_end(self, client: int, t: float) -> float | None:
        """The end of the availability window holding ``t`` (None: offline at t)."""
        windows, period = self.availability[client], self.period[client]
        base, u = _phase(t, period)
        for start, end in windows:
            if start <= u <= end:
                return base + end
        return None

    def online_until(self, client: int, t: float) -> float:
        """When ``client``, online at ``t``, goes offline (inf: never). Touching windows,
        and a window running into the next period's first one, count as one stretch."""
        if self.availability is None or self.availability[client] is None:
            return math.inf
        end = self._window_end(client, t)
        if end is None:
            return t
        for _ in range(len(self.availability[client]) + 1):
            later = self._window_end(client, math.nextafter(end, math.inf))
            if later is None:
                return end
            end = later
        return math.inf    # the windows cover the whole period


def _phase(t: float, period: float) -> tuple[float, float]:
    """(start of the period holding t, t's offset in it); no period: (0, t)."""
    return (t - t % period, t % period) if period > 0 else (0.0, t)
