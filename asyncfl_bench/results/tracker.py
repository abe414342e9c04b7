"""Tracker export: a finished run's curves as TensorBoard event files (``run --log tensorboard``).

FLSim logs its training curves to TensorBoard; we do the same from a run's results
folder after the run, so the export never touches the simulation and reused runs
export too. TensorBoard scalars have an integer step and a float wall time: the step
is the number of arrivals and the wall time is the *virtual* time of that point, so
TensorBoard's "Relative" horizontal axis is virtual time (starting at 0) and its
"Step" axis is arrivals. Written with the ``tensorboard`` package's own event writer
(no torch); it is an optional extra: ``pip install 'asyncfl-bench[tensorboard]'``.

Layout: ``LOGDIR/<task>/<preset>/<method>/seed<seed>-<run id>``, one TensorBoard
run per results run, so its run selector groups methods. ``run`` calls
``check_tracker`` before any run starts and ``export_run`` after each run.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from asyncfl_bench.errors import UserError
from asyncfl_bench.results.store import read_curve, read_json

TRACKERS = ("tensorboard",)
EVENTS_GLOB = "events.out.tfevents.*"


def check_tracker(name: str | None) -> None:
    """Fail before any work when ``--log`` names an unknown tracker or its package is missing."""
    if name is None:
        return
    if name not in TRACKERS:
        raise UserError(f"unknown tracker '{name}' for --log; valid: {', '.join(TRACKERS)}")
    try:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter  # noqa: F401
    except ImportError:
        raise UserError("--log tensorboard needs the tensorboard package; "
                        "fix: pip install 'asyncfl-bench[tensorboard]'") from None


def read_arrivals(folder: Path) -> pd.DataFrame | None:
    """A run's ``arrivals.csv`` (None where the run has none); a damaged one is a user error."""
    path = Path(folder) / "arrivals.csv"
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        frame, problem = None, e.__class__.__name__
    else:
        missing = {"arrival", "time", "staleness"} - set(frame.columns)
        problem = f"missing column {sorted(missing)[0]!r}" if missing else None
    if problem:
        raise UserError(f"corrupt results file {path} ({problem}); "
                        f"fix: delete {path.parent} and run again (or run with --force)")
    return frame


def scalar_series(folder: Path) -> dict[str, list[tuple[int, float, float]]]:
    """Tag → [(step = arrivals, wall time = virtual time, value)] for one finished run:
    test accuracy and loss (and per class) at every evaluation, the staleness of every
    arrival, and the server's mean cost per arrival (one point at the end of the run;
    the simulator records it as a total)."""
    curve = read_curve(folder)
    summary = read_json(folder / "summary.json")
    series: dict[str, list[tuple[int, float, float]]] = {}
    for column, tag in [("accuracy", "test/accuracy"), ("loss", "test/loss"), ("val_accuracy", "validation/accuracy"),
                        ("version", "server/version"),
                        *[(c, f"test/class_accuracy/{c.removeprefix('class_acc_')}")
                          for c in curve.columns if c.startswith("class_acc_")]]:
        if column in curve and curve[column].notna().any():   # a tuning trial has no test accuracy
            series[tag] = [(int(a), float(t), float(v))
                           for a, t, v in zip(curve["arrivals"], curve["time"], curve[column]) if pd.notna(v)]
    arrivals = read_arrivals(folder)
    if arrivals is not None:
        series["schedule/staleness"] = [(int(a), float(t), float(s)) for a, t, s in
                                        zip(arrivals["arrival"], arrivals["time"], arrivals["staleness"])]
    if "server_ms_per_arrival" in summary:
        series["server/ms_per_arrival"] = [(int(summary["arrivals"]), float(summary["final_time"]),
                                            float(summary["server_ms_per_arrival"]))]
    return series


def default_logdir(results: Path) -> Path:
    """Where ``run --log tensorboard`` writes unless told otherwise: next to the runs, in a
    folder the report's ``<task>/<method>/<run-id>`` layout never reads as runs."""
    return Path(results) / "tensorboard"


def event_dir(logdir: Path, config: dict, rid: str) -> Path:
    return Path(logdir) / config["task"] / config["preset"] / config["method"] / f"seed{config['seed']}-{rid}"


def export_run(folder: Path, logdir: Path) -> Path:
    """Write one finished run (its results folder) as TensorBoard events under ``logdir``;
    returns the event folder. Exporting a run again (a reused run) replaces its events,
    never appends to them: TensorBoard would draw both."""
    folder = Path(folder)
    if not (folder / "summary.json").is_file():
        raise UserError(f"{folder} holds no finished run (no summary.json), so there is nothing to export; "
                        f"fix: finish it with `asyncfl-bench run` (the same command resumes it)")
    check_tracker("tensorboard")   # a missing package: the same one-line fix as at the start of `run`
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    config = read_json(folder / "config.json")
    series = scalar_series(folder)     # read everything before the old events go
    target = event_dir(logdir, config, folder.name)
    try:
        target.mkdir(parents=True, exist_ok=True)
        for old in target.glob(EVENTS_GLOB):
            old.unlink()
        writer = EventFileWriter(str(target))
        try:
            for tag, points in series.items():
                for step, when, value in points:
                    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
                    writer.add_event(event_pb2.Event(wall_time=when, step=step, summary=summary))
        finally:
            writer.close()
    except OSError as e:
        raise UserError(f"cannot write TensorBoard events to {target} ({e.strerror or e}); "
                        f"fix: pass a writable --log-dir or fix its permissions") from None
    return target
