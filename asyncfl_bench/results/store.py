"""The results store: ``<root>/<task>/<method>/<run-id>/``.

Each run folder holds ``config.json`` (the resolved config), ``curve.csv``
(evaluation points), ``arrivals.csv`` (one row per arrival: client, time,
staleness) and ``summary.json``, written last: a folder with a readable summary
is a finished run. Every file is written to a temporary name and renamed, so a
crash never leaves a half-written file under a real name.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pandas as pd

from asyncfl_bench.errors import UserError


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n").encode())


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    atomic_write(path, frame.to_csv(index=False).encode())


def ensure_writable(folder: Path) -> None:
    """Fail before any work if the run folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe.", delete=True)
        probe.close()
    except OSError as e:
        raise UserError(f"cannot write results to {folder} ({e.strerror or e}); fix: pass a writable "
                        f"--results folder or fix its permissions") from None


def run_dir(root: Path, task: str, method: str, rid: str) -> Path:
    return Path(root) / task / method / rid


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"corrupt results file {path} ({e.__class__.__name__}); "
                        f"fix: delete {path.parent} and run again (or run with --force)") from None


def finished_summary(folder: Path) -> dict | None:
    path = folder / "summary.json"
    return read_json(path) if path.exists() else None


def iter_runs(root: Path):
    """Yield (folder, config, summary) for every finished run under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"results folder {root} does not exist; fix: run `asyncfl-bench run` first "
                        f"or pass --results DIR")
    for summary_path in sorted(root.glob("*/*/*/summary.json")):
        folder = summary_path.parent
        yield folder, read_json(folder / "config.json"), read_json(summary_path)


def read_curve(folder: Path) -> pd.DataFrame:
    path = folder / "curve.csv"
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"corrupt results file {path} ({e.__class__.__name__}); "
                        f"fix: delete {folder} and run again (or run with --force)") from None
    missing = {"arrivals", "time", "accuracy"} - set(frame.columns)
    if missing:
        raise UserError(f"corrupt results file {path}: missing column {sorted(missing)[0]!r}; "
                        f"fix: delete {folder} and run again (or run with --force)")
    return frame
