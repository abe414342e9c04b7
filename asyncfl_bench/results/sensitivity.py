"""Tuning sensitivity: how a tune's objective moved with each tuned value, per method.

Read from what ``tune`` leaves in a results folder: its tuned-values file
``tuned/<task>-<preset>.json`` names each method's Optuna study, and the study
database ``tuned/<task>-<preset>.db`` holds every trial's sampled values and score
(opened read-only: a report never changes a study, even one a running tune is
adding to). A results folder shared without the database falls back on the trial
runs under ``tuned/trials/``, scored as ``tune`` scores them.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from asyncfl_bench.errors import UserError
from asyncfl_bench.results import plots
from asyncfl_bench.results.store import iter_runs, read_curve


def read_tuned(results: Path, task: str, preset: str) -> dict | None:
    """``RESULTS/tuned/<task>-<preset>.json`` as ``tune`` wrote it; None when absent or not
    readable as one (rerunning ``tune`` rewrites it)."""
    path = Path(results) / "tuned" / f"{task}-{preset}.json"
    try:
        tuned = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(tuned, dict) or not isinstance(tuned.get("methods"), dict) or not {
            "task", "preset", "objective", "setup", "tuning_seeds"} <= set(tuned):
        return None
    return tuned


def study_trials(storage: Path, tuned: dict) -> dict[str, pd.DataFrame]:
    """Per method of a tuned-values file: one row per trial of its Optuna study (named in the
    file) with the sampled values and the trial's value, the first ``budget.trials``
    finished trials as ``tune`` counts them. The SQLite file is opened read-only."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///file:{quote(str(Path(storage).resolve()))}?mode=ro&uri=true"
    db = optuna.storages.RDBStorage(url, skip_compatibility_check=True, skip_table_creation=True)
    budget = int(tuned.get("budget", {}).get("trials") or 10 ** 9)
    found = {}
    for method, entry in sorted(tuned["methods"].items()):
        study = optuna.load_study(study_name=entry["study"], storage=db)
        done = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)
        rows = [{**t.params, "value": float(t.value)} for t in done[:budget]]
        if rows:
            found[method] = pd.DataFrame(rows)
    return found


def tuning_trials(results: Path, tuned: dict) -> dict[str, pd.DataFrame]:
    """Per method of a tuned-values file: one row per trial, its sampled values and its
    value as ``tune`` scored it (the objective on validation, averaged over the tuning
    seeds). From the tune's Optuna studies (``RESULTS/tuned/<task>-<preset>.db``) where
    that file exists; otherwise (a results folder shared without it) rebuilt from the trial
    runs under ``RESULTS/tuned/trials/``. Runs of another task, preset, setup or seed are
    not this tune's; a trial with an unfinished run is left out."""
    storage = Path(results) / "tuned" / f"{tuned['task']}-{tuned['preset']}.db"
    if storage.is_file():
        return study_trials(storage, tuned)
    from asyncfl_bench.tuning.objective import run_value, trial_value

    root = Path(results) / "tuned" / "trials"
    if not root.is_dir():
        return {}
    seeds = set(tuned["tuning_seeds"])
    values: dict[tuple, dict[int, float]] = {}
    for folder, config, summary in iter_runs(root):
        entry = tuned["methods"].get(config.get("method"))
        # the trials' setup without what only trials set (as tuning.tuned.comparable_setup)
        setup = {k: v for k, v in config.get("setup", {}).items() if k != "evaluate_on"}
        if (entry is None or (config.get("task"), config.get("preset")) != (tuned["task"], tuned["preset"])
                or setup != tuned["setup"] or config.get("seed") not in seeds):
            continue
        dims = sorted(entry.get("space") or entry["params"])
        key = (config["method"], tuple((d, config["method_params"].get(d)) for d in dims))
        values.setdefault(key, {})[config["seed"]] = run_value(
            read_curve(folder), bool(summary.get("diverged")), tuned["objective"], config["setup"]["target_accuracy"])
    rows: dict[str, list[dict]] = {}
    for (method, params), by_seed in sorted(values.items(), key=lambda kv: repr(kv[0])):
        if set(by_seed) == seeds:
            rows.setdefault(method, []).append({**dict(params), "value": trial_value(list(by_seed.values()))})
    return {m: pd.DataFrame(r) for m, r in rows.items()}


def sensitivity(results: Path, tuned: dict, colors: dict[str, str], per_method: bool = False):
    """The tuning sensitivity of one tuned-values file: (figure, None), or with ``per_method``
    ([(figure, caption)] one narrow figure per method, for the HTML page), None), or (None,
    why there is none). A damaged study database (or trial runs) costs this plot, not the
    report."""
    import optuna.exceptions
    import sqlalchemy.exc

    try:
        trials = tuning_trials(results, tuned)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.OptunaError, KeyError, ValueError, OSError,
            UserError) as e:
        # a damaged study file, one without the file's studies, or (no study file) a damaged trial run
        db = f"tuned/{tuned['task']}-{tuned['preset']}.db"
        source = f"the study database {db}" if (Path(results) / db).is_file() else "the trial runs under tuned/trials/"
        return None, f"{source} is unreadable ({e.__class__.__name__}); rerunning the same tune rebuilds it"
    log_scale = {m: {k for k, spec in e.get("space", {}).items() if str(spec).startswith("log")}
                 for m, e in tuned["methods"].items()}
    best = {m: e["params"] for m, e in tuned["methods"].items()}
    # the colour of the method's tuned runs (labelled method[tuned] where default ones exist)
    colors = {m: colors.get(f"{m}[tuned]", colors.get(m, "#1f77b4")) for m in tuned["methods"]}
    ylabel, title = f"{tuned['objective']} on validation", f"{tuned['task']} · {tuned['preset']}: tuning sensitivity"
    none = "no finished trial in the studies or under tuned/trials/"
    if per_method:
        figures = [(plots.sensitivity_figure({m: frame}, log_scale, best, colors, ylabel, f"{m}: tuning sensitivity",
                                             cols=1, width=plots.PAGE_SIZE[0]), f"{m}: {len(frame)} trials")
                   for m, frame in sorted(trials.items())]
        figures = [(f, c) for f, c in figures if f is not None]
        return (figures, None) if figures else (None, none)
    fig = plots.sensitivity_figure(trials, log_scale, best, colors, ylabel, title)
    return fig, None if fig is not None else none
