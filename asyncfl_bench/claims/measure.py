"""One number per finished run, for a claim's metric.

A run that never reaches the target accuracy counts at its horizon (its last virtual time,
or its number of arrivals): a lower bound on the time it would have needed, so a censored
seed understates the gap on whichever side it falls, never invents one. The claims table
says how many runs of each arm were censored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asyncfl_bench.errors import UserError
from asyncfl_bench.results.metrics import mean_accuracy_over_time
from asyncfl_bench.results.store import read_curve


@dataclass(frozen=True)
class Value:
    value: float
    censored: bool = False        # a time to target the run never reached (value = horizon)


def measure(metric: str, folder: Path, summary: dict) -> Value:
    if metric in ("final_accuracy", "best_accuracy"):
        return Value(float(summary[metric]))
    if metric in ("final_slow_class_accuracy", "mean_slow_class_accuracy"):
        if summary.get(metric) is None:
            raise UserError(f"{folder}: the run has no {metric} (its trace delays no class); fix: the claim's "
                            f"scale needs an intertwined trace")
        return Value(float(summary[metric]))
    if metric == "mean_accuracy":
        return Value(mean_accuracy_over_time(read_curve(folder), float(summary["final_time"])))
    if metric == "time_to_target":
        reached = summary["time_to_target"]
        return Value(float(summary["final_time"]), True) if reached is None else Value(float(reached))
    if metric == "arrivals_to_target":
        curve = read_curve(folder)
        hit = curve.loc[curve["accuracy"] >= summary["target_accuracy"], "arrivals"]
        return Value(float(hit.iloc[0])) if len(hit) else Value(float(summary["arrivals"]), True)
    raise ValueError(f"unknown metric {metric}")
