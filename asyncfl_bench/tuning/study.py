"""Tune methods with one budget each: Optuna studies whose trials are normal runs.

Every method gets the same number of trials ``N``; a trial is one run per tuning
seed on the preset's schedule, with the sampled values as ``--set`` overrides, a
validation split held out of every client's data and evaluation on that split only
(``setup.evaluate_on = "validation"``: the run's data has no test set). Its value
is the objective (``objective.py``) averaged over the seeds.

Determinism. Trial ``n`` of a study is proposed by a TPE sampler seeded with
(sampler seed, ``n``), after every earlier trial has its value, as if the trials ran
one after another. The exception is TPE's random start-up phase: trials that TPE
would sample at random whatever the history are proposed together and run in
parallel. So the same settings give the same trials with any ``--jobs``, executor,
or number of interruptions.

Resuming. Studies live in Optuna's SQLite storage, ``<results>/tuned/<task>-<preset>.db``,
one per method and tune identity (the trials' resolved configs, the space, the
objective and the sampler), so a changed setting starts a new study instead of
mixing values. A trial left running by an interrupted tune is run again with its
stored values (its finished runs are reused, an unfinished one resumes from its
checkpoint), then the study goes on to ``N``. Trial runs live under
``<results>/tuned/trials/`` (outside the report's ``<task>/<method>/<run-id>`` layout).
Run one tune per results folder at a time.
"""
from __future__ import annotations

import hashlib
import math
import json
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd
import sqlalchemy.exc
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import TrialState

from asyncfl_bench.atomic import held_alone
from asyncfl_bench.config.settings import resolve, run_id
from asyncfl_bench.errors import UserError
from asyncfl_bench.results.store import ensure_writable, run_dir
from asyncfl_bench.simulation.executors import RunOptions, run_configs
from asyncfl_bench.tuning import tuned as tuned_file
from asyncfl_bench.tuning.objective import DIRECTIONS, run_value, trial_value
from asyncfl_bench.tuning.space import Dimension, as_overrides

TUNING_SEEDS = "1000"           # disjoint from the reporting seeds 0, 1, ... by default
STARTUP_TRIALS = 10             # Optuna's default count of TPE's random start-up trials
EDGE_SHARE = 0.05               # a best value this close to a range edge (share of the range) is flagged


def startup_trials_for(trials: int) -> int:
    """TPE's random start-up trials for a budget of ``trials``: a quarter of it, at least 2
    and at most Optuna's 10. Optuna's fixed 10 suits budgets of a hundred trials; at the
    12–20 a benchmark can afford per method it leaves TPE two to ten guided trials, so
    the search would be mostly random. TPE needs a few points to fit its two densities,
    hence at least 2 (the suite's rule, recorded in the tuned file)."""
    return max(2, min(STARTUP_TRIALS, math.ceil(trials / 4)))


def at_edge(value: float, dim: Dimension) -> str | None:
    """``"low"``/``"high"`` when ``value`` lies within EDGE_SHARE of that end of the range
    (measured on the log scale for log dimensions), else None."""
    lo, hi, v = dim.low, dim.high, float(value)
    if dim.log:
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    if hi <= lo:
        return None
    share = (v - lo) / (hi - lo)
    return "low" if share <= EDGE_SHARE else ("high" if share >= 1 - EDGE_SHARE else None)


@dataclass(frozen=True)
class TuneSpec:
    """Everything that fixes what a tune proposes and how it scores, shared by all its methods."""

    task: object                        # the Task
    preset: str
    device: str
    overrides: dict                     # --set, applied to every trial of every method
    method_names: tuple[str, ...]
    trials: int                         # N, the budget per method
    seeds: tuple[int, ...]              # tuning seeds: one run each per trial
    objective: str
    validation_fraction: float
    sampler_seed: int = 0
    startup_trials: int = STARTUP_TRIALS


@dataclass
class MethodStudy:
    method_cls: type
    space: dict[str, Dimension]
    name: str = ""                      # the study's name in the storage
    study: optuna.Study | None = None
    setup: dict = field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.method_cls.name


def storage_path(results: Path, task: str, preset: str) -> Path:
    return Path(results) / "tuned" / f"{task}-{preset}.db"


def trials_root(results: Path) -> Path:
    return Path(results) / "tuned" / "trials"


def trial_config(spec: TuneSpec, method_cls, seed: int, params: dict) -> dict:
    """One run of a trial: the preset's config with ``params`` as overrides, holding out the
    validation split and evaluating on it only."""
    pinned = sorted(k for k in as_overrides(method_cls.name, params) if k in spec.overrides)
    if pinned:
        raise UserError(f"--set {pinned[0]} pins a parameter the tune samples; fix: drop it from --set, "
                        f"or from the search space (--space)")
    config = resolve(spec.task, spec.preset, method_cls, seed, spec.device,
                     {**spec.overrides, **as_overrides(method_cls.name, params)}, list(spec.method_names))
    config["setup"]["validation_fraction"] = spec.validation_fraction
    config["setup"]["evaluate_on"] = "validation"
    return config


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def _sampler(spec: TuneSpec, number: int) -> optuna.samplers.TPESampler:
    seed = int(_digest([spec.sampler_seed, number]), 16) % 2 ** 32
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials)


def _distribution(dim: Dimension):
    if dim.integer:
        return IntDistribution(int(dim.low), int(dim.high), log=dim.log)
    return FloatDistribution(dim.low, dim.high, log=dim.log)


def open_studies(spec: TuneSpec, plans: list[MethodStudy], path: Path) -> None:
    """Create or load every method's study in the SQLite file at ``path``."""
    ensure_writable(path.parent)
    base = {m.method: [trial_config(spec, m.method_cls, s, {}) for s in spec.seeds] for m in plans}
    try:
        storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")
        for m in plans:
            m.setup = tuned_file.comparable_setup(base[m.method][0]["setup"])
            identity = {"configs": base[m.method], "space": {k: d.spec for k, d in m.space.items()},
                        "objective": spec.objective, "sampler_seed": spec.sampler_seed,
                        "startup_trials": spec.startup_trials}
            m.name = f"{spec.task.name}-{spec.preset}-{m.method}-{_digest(identity)}"
            m.study = optuna.create_study(study_name=m.name, storage=storage, load_if_exists=True,
                                          direction=DIRECTIONS[spec.objective])
            m.study.set_user_attr("identity", identity)
    except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ValueError) as e:
        raise UserError(f"the study database {path} is unreadable ({str(e).splitlines()[0][:120]}); it was "
                        f"left as it is; fix: move it away and rerun the same tune: it proposes the same "
                        f"trials again and reuses their finished runs under {path.parent / 'trials'}") from None


def _trials(study: optuna.Study, *states) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state in states]


def next_round(spec: TuneSpec, m: MethodStudy) -> list[tuple[int, dict]]:
    """(trial number, params) to run now: trials left running by an interrupted tune, then new
    ones, as many as keep the sequence equal to a one-after-another tune."""
    study = m.study
    complete = len(_trials(study, TrialState.COMPLETE))
    todo = []
    for t in _trials(study, TrialState.RUNNING):
        if set(t.params) != set(m.space):   # interrupted while being proposed: no trial
            study.tell(t.number, state=TrialState.FAIL)
        elif complete + len(todo) < spec.trials:   # beyond this budget: left for a larger one
            todo.append((t.number, dict(t.params)))
    distributions = {name: _distribution(d) for name, d in m.space.items()}
    while complete + len(todo) < spec.trials:
        # TPE proposes at random while it has fewer than startup_trials values: such trials
        # do not depend on the others' values, so they may run together
        if todo and complete + len(todo) >= spec.startup_trials:
            break
        study.sampler = _sampler(spec, len(study.get_trials(deepcopy=False)))
        trial = study.ask(distributions)
        todo.append((trial.number, dict(trial.params)))
    return todo


def _curve(results: Path, config: dict) -> pd.DataFrame:
    return pd.read_csv(run_dir(trials_root(results), config["task"], config["method"], run_id(config)) / "curve.csv")


@dataclass
class Execution:
    """How trial runs execute (never what they compute)."""

    jobs: int = 1
    executor: str = "local"
    address: str | None = None
    console: object = None
    options: dict = field(default_factory=dict)   # RunOptions fields other than the results folder


def run_trial_configs(configs: list[dict], results: Path, execution: Execution) -> list[dict]:
    """The one call into the executors: summaries in the order given."""
    opts = RunOptions(trials_root(results), **execution.options)
    done = run_configs(configs, opts, execution.jobs, execution.executor, execution.address, execution.console)
    return [summary for _, summary, _ in done]


def best_trial(spec: TuneSpec, m: MethodStudy):
    """The best of the study's first N finished trials (a study extended beyond N by another
    tune still counts N here: the same budget for every method); ties go to the earlier."""
    first = sorted(_trials(m.study, TrialState.COMPLETE), key=lambda t: t.number)[:spec.trials]
    sign = -1 if DIRECTIONS[spec.objective] == "maximize" else 1
    return min(first, key=lambda t: (sign * t.value, t.number))


def tune(spec: TuneSpec, plans: list[MethodStudy], results: Path, execution: Execution,
         on_round=None) -> dict:
    """Run every method's study to ``spec.trials`` finished trials; returns the tuned-file
    content (written by the caller). ``on_round(rows)`` gets (method, number, params, value)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # the caller reports each round
    path = storage_path(results, spec.task.name, spec.preset)
    ensure_writable(path.parent)
    # one tune per study database: a second would re-run the first's running trials and
    # fail on Optuna's tell(); it exits 2 naming the holder instead
    with held_alone(path, "the study database", "wait for that tune to finish (its studies resume, so "
                    "rerunning the same tune then reuses every finished trial), or tune into another --results"):
        open_studies(spec, plans, path)
        while True:
            batch = [(m, number, params) for m in plans for number, params in next_round(spec, m)]
            if not batch:
                break
            configs = [trial_config(spec, m.method_cls, s, params) for m, _, params in batch for s in spec.seeds]
            summaries = iter(run_trial_configs(configs, results, execution))
            configs_iter = iter(configs)
            rows = []
            for m, number, params in batch:
                values = []
                for _ in spec.seeds:
                    cfg, summary = next(configs_iter), next(summaries)
                    values.append(run_value(_curve(results, cfg), bool(summary["diverged"]), spec.objective,
                                            cfg["setup"]["target_accuracy"]))
                value = trial_value(values)
                m.study.tell(number, value)
                rows.append((m.method, number, params, value))
            if on_round is not None:
                on_round(rows)
        return tuned_content(spec, plans, path)


def tuned_content(spec: TuneSpec, plans: list[MethodStudy], path: Path) -> dict:
    setups = {json.dumps(m.setup, sort_keys=True) for m in plans}
    assert len(setups) == 1, "the setup does not depend on the method"
    methods = {}
    for m in plans:
        best = best_trial(spec, m)
        edges = {k: e for k, v in best.params.items() if (e := at_edge(v, m.space[k])) is not None}
        methods[m.method] = {"params": dict(best.params), "value": tuned_file.finite_or_none(best.value),
                             "best_trial": best.number, "study": m.name,
                             "space": {k: d.spec for k, d in m.space.items()},
                             "at_range_edge": edges}
    return {
        "format": tuned_file.FORMAT, "schema": tuned_file.SCHEMA,
        "task": spec.task.name, "preset": spec.preset,
        "objective": spec.objective, "direction": DIRECTIONS[spec.objective],
        "budget": {"trials": spec.trials, "runs_per_trial": len(spec.seeds), "sampler": "TPE",
                   "sampler_seed": spec.sampler_seed, "startup_trials": spec.startup_trials},
        "tuning_seeds": list(spec.seeds),
        "validation_fraction": float(spec.validation_fraction),
        "setup": plans[0].setup,
        "storage": str(path),
        "methods": methods,
    }
