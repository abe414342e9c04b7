"""What a tune optimises: one number per trial, from validation metrics only.

Each run of a trial (one per tuning seed) gives a value from its curve's
``val_accuracy`` column; the trial's value is their mean over the seeds.

* ``mean_accuracy`` (default): validation accuracy averaged over the run's virtual
  time window (the area under the accuracy–time step function up to the last
  arrival, divided by it), so a method is rewarded for being good early as well
  as at the end; maximised.
* ``final_accuracy``: validation accuracy at the end of the run; maximised.
* ``time_to_target``: virtual time of the first evaluation at or above the
  preset's ``target_accuracy`` on validation; minimised, ``inf`` if never reached.

A diverged run scores the worst value (0 accuracy, ``inf`` time): its window ends
at the divergence, so averaging over what it ran would reward diverging late
rather than not at all.
"""
from __future__ import annotations

import math

import pandas as pd

from asyncfl_bench.errors import UserError
from asyncfl_bench.results.metrics import mean_accuracy_over_time, time_to_target

DIRECTIONS = {"mean_accuracy": "maximize", "final_accuracy": "maximize", "time_to_target": "minimize"}


def check_objective(name: str) -> str:
    if name not in DIRECTIONS:
        raise UserError(f"unknown objective '{name}'; valid: {', '.join(DIRECTIONS)}")
    return name


def worst(objective: str) -> float:
    return math.inf if DIRECTIONS[objective] == "minimize" else 0.0


def run_value(curve: pd.DataFrame, diverged: bool, objective: str, target: float) -> float:
    """One run's value of ``objective`` on its validation curve."""
    if "val_accuracy" not in curve:
        raise UserError("the trial's curve has no val_accuracy column: the run did not evaluate on a "
                        "validation split; fix: update asyncfl-bench (the simulator must evaluate it)")
    if diverged:
        return worst(objective)
    val = pd.DataFrame({"time": curve["time"], "accuracy": curve["val_accuracy"]})
    if objective == "mean_accuracy":
        return mean_accuracy_over_time(val, float(val["time"].iloc[-1]))
    if objective == "final_accuracy":
        return float(val["accuracy"].iloc[-1])
    hit = time_to_target(val, target)
    return math.inf if hit is None else hit


def trial_value(values: list[float]) -> float:
    """The mean over the tuning seeds (``inf`` if any run never reached the target)."""
    return float(sum(values) / len(values))
