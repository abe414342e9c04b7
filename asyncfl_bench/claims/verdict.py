"""The test that decides a claim at a scale: paired by seed, the mean effect and its 95 % CI.

Per seed s, the effect of the claimed arm A over an arm B:

* accuracy metrics: e_s = m_A(s) − m_B(s) (points of accuracy; positive when A is higher);
* times to a target: e_s = ln(t_B(s) / t_A(s)) (positive when A is faster; exp(mean) is
  A's speed-up over B);
* a measurement's error against the truth: e = err_B − err_A (positive when A's estimate
  is closer), paired by probe (seed, client, end point, staleness) instead of by seed.
  Probes of one seed share its trajectory, so they are not independent draws: their
  interval is narrower than as many seeds would give, and the per-seed spread in the
  table's effects is the check on it.

The claim **holds** when the 95 % Student-t interval of mean(e) lies above 0, **does not
hold** when it lies below 0 (the opposite is what the runs show), and is **inconclusive**
otherwise, or with fewer than two paired seeds. The paired wins are shown beside it; the
interval alone decides, so a claim's test is fixed by the metric, never chosen per claim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from asyncfl_bench.claims.spec import METRICS
from asyncfl_bench.results.metrics import mean_ci

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Comparison:
    """One arm against another over paired seeds."""
    effect: float                 # mean effect (see module docstring)
    low: float                    # its 95 % interval
    high: float
    wins: int                     # seeds where the claimed arm is strictly better
    losses: int
    pairs: int                    # paired units: seeds (runs) or probes (a measurement)
    verdict: str


def effects(metric: str, claimed: list[float], other: list[float]) -> list[float]:
    """Per-seed effects of the claimed arm over the other (same seed order)."""
    if len(claimed) != len(other):
        raise ValueError("paired values need the same seeds")
    kind = METRICS[metric][1]
    if kind == "time":
        return [math.log(max(b, 1e-12) / max(a, 1e-12)) for a, b in zip(claimed, other)]
    if kind == "error":
        return [b - a for a, b in zip(claimed, other)]
    return [a - b for a, b in zip(claimed, other)]


def decide(metric: str, claimed: list[float], other: list[float]) -> Comparison:
    e = effects(metric, claimed, other)
    mean, half = mean_ci(e)
    low, high = mean - half, mean + half
    if len(e) < 2:
        verdict = INCONCLUSIVE
    elif low > 0:
        verdict = HOLDS
    elif high < 0:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    return Comparison(mean, low, high, sum(x > 0 for x in e), sum(x < 0 for x in e), len(e), verdict)


def overall(verdicts: list[str]) -> str:
    """A claim against several arms holds only if it holds against each; one refuted
    comparison refutes it."""
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    return FAILS if FAILS in verdicts else INCONCLUSIVE


def measured_text(metric: str, c: Comparison) -> str:
    """The measured figure as a reader compares it with the paper's."""
    if METRICS[metric][1] == "time":
        return f"{math.exp(c.effect):.2f}× faster [{math.exp(c.low):.2f}, {math.exp(c.high):.2f}]"
    if METRICS[metric][1] == "error":
        return f"{c.effect:+.3f} less error [{c.low:+.3f}, {c.high:+.3f}]"
    return f"{100 * c.effect:+.1f} pts [{100 * c.low:+.1f}, {100 * c.high:+.1f}]"
