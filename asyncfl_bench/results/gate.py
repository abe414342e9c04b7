"""The CI regression gate: compare runs against a committed baseline.

A baseline file lists runs (task, preset, method, seed, overrides) and their
final accuracy, best accuracy and time to target. ``compare`` flags a metric
as worse when accuracy drops by more than ``tolerance`` (absolute) or the time
to target grows by more than ``tolerance`` (relative), or the target is no
longer reached.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from asyncfl_bench.errors import UserError
from asyncfl_bench.atomic import atomic_write

SCHEMA = 1
METRICS = ("final_accuracy", "best_accuracy", "time_to_target")


def read(path: Path) -> dict:
    try:
        blob = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"baseline {path} does not exist; fix: create it with "
                        f"`asyncfl-bench check --baseline {path} --update`") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"baseline {path} is not valid JSON ({e}); fix: restore it from git or "
                        f"rewrite it with --update") from None
    if not isinstance(blob, dict) or blob.get("schema") != SCHEMA or not isinstance(blob.get("runs"), list):
        raise UserError(f"baseline {path} is not a schema-{SCHEMA} baseline (needs 'schema' and 'runs'); "
                        f"fix: rewrite it with --update")
    for i, run in enumerate(blob["runs"]):
        missing = [k for k in ("task", "preset", "method", "seed", *METRICS) if k not in run]
        if missing:
            raise UserError(f"baseline {path}: run #{i} lacks {missing[0]!r}; fix: rewrite it with --update")
    return blob


def write(path: Path, runs: list[dict]) -> None:
    blob = {"schema": SCHEMA, "runs": runs}
    atomic_write(Path(path), (json.dumps(blob, indent=2, sort_keys=True) + "\n").encode())


def entry(config: dict, overrides: dict, summary: dict, tuned: str | None = None) -> dict:
    """One baseline run; ``tuned`` (a tuned-values file relative to the baseline's folder)
    makes ``check`` rerun it with those values, as ``run --tuned`` would."""
    return {"task": config["task"], "preset": config["preset"], "method": config["method"],
            "seed": config["seed"], "set": overrides, **({"tuned": tuned} if tuned else {}),
            **{k: summary[k] for k in METRICS}}


def relative_to_baseline(tuned: Path, baseline: Path) -> str:
    """A tuned file's path as a baseline records it: relative to the baseline's folder, so
    a clone anywhere finds it."""
    try:
        return Path(os.path.relpath(Path(tuned).resolve(), Path(baseline).resolve().parent)).as_posix()
    except ValueError:    # another drive
        raise UserError(f"tuned file {tuned} and baseline {baseline} are on different drives; "
                        f"fix: keep the tuned file next to the baseline") from None


def compare(base: dict, now: dict, tolerance: float) -> list[dict]:
    """One row per metric: baseline, current, difference, and whether it is worse."""
    rows = []
    for metric in METRICS:
        b, c = base[metric], now[metric]
        if metric == "time_to_target":
            if b is None:
                worse, diff = False, None
            elif c is None:
                worse, diff = True, None      # the target is no longer reached
            else:
                diff = c - b
                worse = c > b * (1 + tolerance)
        else:
            diff = c - b
            worse = c < b - tolerance
        tag = "[tuned]" if base.get("tuned") else ""
        rows.append({"run": f"{base['task']}/{base['method']}{tag}/seed {base['seed']}", "metric": metric,
                     "baseline": b, "current": c, "diff": diff, "worse": worse})
    return rows
