"""The results store: ``<root>/<task>/<method>/<run-id>/``.

Each run folder holds ``config.json`` (the resolved config), ``curve.csv``
(evaluation points), ``arrivals.csv`` (one row per arrival: client, time,
staleness) and ``summary.json``, written last: a folder with a readable summary
is a finished run. Every file is written to a temporary name and renamed, so a
crash never leaves a half-written file under a real name.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pandas as pd

from asyncfl_bench.atomic import atomic_write
from asyncfl_bench.config.identity import run_id
from asyncfl_bench.errors import UserError

# names that become path components (task, preset, method, run id): one plain component,
# never "..", a separator or an absolute path, whatever a results file someone sent says
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


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
    """The summary of the finished run in ``folder``, or None; a folder whose config does
    not hash to its name (an edited or foreign folder) is refused, never reused."""
    path = folder / "summary.json"
    if not path.exists():
        return None
    check_folder(folder, read_json(folder / "config.json"))
    return read_json(path)


def check_folder(folder: Path, config: dict) -> None:
    """A run folder is ``<task>/<method>/<run id>`` of its own ``config.json``: its names are
    plain path components and the config hashes to the folder's name."""
    for key in ("task", "method", "preset"):
        value = config.get(key) if isinstance(config, dict) else None
        if not isinstance(value, str) or not NAME.match(value):
            raise UserError(f"{folder / 'config.json'}: its {key} {value!r} is not a plain name (letters, digits, "
                            f". _ -), so no path is built from it; the folder was altered or not written by "
                            f"asyncfl-bench; fix: remove {folder} from the results folder")
    rid = run_id(config)
    if (folder.parent.parent.name, folder.parent.name, folder.name) != (config["task"], config["method"], rid):
        raise UserError(f"{folder}: its config.json is run {config['task']}/{config['method']}/{rid}, not this "
                        f"folder's; the folder was altered or copied from elsewhere; fix: remove {folder} "
                        f"(or rerun that run with --force)")


def iter_runs(root: Path):
    """Yield (folder, config, summary) for every finished run under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"results folder {root} does not exist; fix: run `asyncfl-bench run` first "
                        f"or pass --results DIR")
    for summary_path in sorted(root.glob("*/*/*/summary.json")):
        folder = summary_path.parent
        config = read_json(folder / "config.json")
        check_folder(folder, config)
        yield folder, config, read_json(summary_path)


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
