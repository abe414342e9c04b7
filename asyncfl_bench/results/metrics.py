"""Per-run metrics shared by runs and reports: time to target, accuracy over time, confidence intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student t; 0 for one seed)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float(v.mean()), 0.0
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def time_to_target(curve: pd.DataFrame, target: float) -> float | None:
    """Virtual time of the first evaluation at or above ``target`` (None: never reached)."""
    hit = curve.loc[curve["accuracy"] >= target, "time"]
    return float(hit.iloc[0]) if len(hit) else None


def mean_accuracy_over_time(curve: pd.DataFrame, horizon: float) -> float:
    """Area under the accuracy–time curve up to ``horizon``, divided by it (accuracy is a step
    function between evaluations, so it is what a deployed model had on average)."""
    t, a = curve["time"].to_numpy(), curve["accuracy"].to_numpy()
    edges = np.clip(np.append(t, horizon), 0, horizon)
    return float(np.sum(a * np.diff(edges)) / horizon) if horizon > 0 else float(a[0])
