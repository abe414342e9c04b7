"""One run, end to end, in the order it happens:

resolved config → data (hold-outs) → initial model → trace → schedule → method →
trainers → simulate (resuming a checkpoint) → write curve, arrivals and summary.

Each step passes on the object it made; nothing is rebuilt or re-read later.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout

from asyncfl_bench.config.registry import get_method
from asyncfl_bench.config.settings import run_id
from asyncfl_bench.contract.method import RunPlan, ServerContext, never_engaged
from asyncfl_bench.contract.task import TaskData, evaluation_view, hold_out_proxy, hold_out_validation
from asyncfl_bench.results.metrics import time_to_target
from asyncfl_bench.results.store import ensure_writable, finished_summary, run_dir, write_csv, write_json
from asyncfl_bench.simulation import checkpoint
from asyncfl_bench.simulation.device import machine
from asyncfl_bench.simulation.simulator import RunLog, Simulator, headline
from asyncfl_bench.traces.generators import make_trace, trace_slow_classes
from asyncfl_bench.traces.model import Trace
from asyncfl_bench.traces.schedule import Schedule, make_schedule
from asyncfl_bench.training.batched import BatchedTrainer
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import LocalTrainer
from asyncfl_bench.training.path import BatchClients, TrainingPath, choose_path


@dataclass(frozen=True)
class RunOptions:
    """How runs execute, as opposed to what they compute (the config): none of these
    change a run's numbers beyond ``batched.TOLERANCE``, so none is in the run id."""

    results: Path
    force: bool = False
    data_dir: Path | None = None
    checkpoint_every: int = 0
    checkpoint_minutes: float = 5.0
    keep_checkpoints: bool = False
    batch_clients: BatchClients = BatchClients()
    # torch threads per run (0: automatic, see executors.threads_per_run). CPU float
    # reductions depend on it, so summary.json records it: the same count gives the
    # same numbers with every executor
    threads: int = 0


# -- the steps -----------------------------------------------------------------------
def prepare_data(data: TaskData, setup: dict, seed: int) -> TaskData:
    """The run's view of the task's data: the proxy hold-out, then the validation
    hold-out (disjoint from it), then the test set dropped if the run evaluates on
    validation only (a tuning trial)."""
    data = hold_out_proxy(data, setup["proxy_fraction"], seed)
    data = hold_out_validation(data, setup["validation_fraction"], seed)
    data = evaluation_view(data, setup["evaluate_on"])
    if data.extras.input_shape is None:   # what generators must produce
        data.extras.input_shape = tuple(data.x_train.shape[1:])
    return data


def class_counts(data: TaskData) -> np.ndarray:
    """(clients, classes) sample counts: what an intertwined trace delays by."""
    y = data.y_train.cpu()
    return np.stack([torch.bincount(y[idx.cpu()], minlength=data.num_classes).numpy()
                     for idx in data.clients])


def build_trace(config: dict, data: TaskData) -> Trace:
    setup = config["setup"]
    return make_trace(setup["trace"], setup["num_clients"], config["seed"], class_counts(data))


def build_schedule(config: dict, synchronous: bool, trace: Trace) -> Schedule:
    setup = config["setup"]
    return make_schedule(trace, setup["concurrency"], setup["total_arrivals"], config["seed"], synchronous)


def run_plan(schedule: Schedule) -> RunPlan:
    """The schedule in the numbers a method may scale its settings by (``RunPlan``)."""
    return RunPlan(len(schedule), np.asarray(schedule.dispatched_after).copy(),
                   None if schedule.base_after is None else np.asarray(schedule.base_after).copy())


def engagement_fields(method) -> dict:
    """summary.json's ``engaged`` (None: the method has no mechanism that can stay idle)
    and ``engagement``: what happened, or the never-engaged warning."""
    e = method.engagement()
    if e is None:
        return {"engaged": None}
    return {"engaged": bool(e["engaged"]),
            "engagement": never_engaged(method.name, e) or f"{e['mechanism']}: {e.get('detail', 'yes')}"}


def build_simulator(config: dict, method, schedule: Schedule, data: TaskData, build, model: torch.nn.Module,
                    layout: Layout, batch: BatchClients) -> tuple[Simulator, TrainingPath]:
    setup, device = config["setup"], torch.device(config["device"])
    augment = data.extras.augment
    trainer = LocalTrainer(build, layout, setup["local"], device, augment=augment)
    path = choose_path(batch, model, layout, setup["local"], device, setup["concurrency"], data.x_train[:1])
    batched = (BatchedTrainer(build, layout, setup["local"], device, augment, group=path.group)
               if path.group > 1 else None)
    sim = Simulator(method, schedule, data, trainer, model, config["seed"], setup["eval_every"],
                    setup["eval_batch_size"], batched)
    return sim, path


# -- the summary ---------------------------------------------------------------------
def slow_class_accuracy(curve: pd.DataFrame, classes: list[int]) -> dict:
    """Accuracy on the classes an intertwined trace delays (their mean per evaluation
    point): final and averaged over the run. Empty for other traces."""
    cols = [f"class_acc_{c}" for c in classes]
    if not classes or any(c not in curve for c in cols):
        return {}
    acc = curve[cols].mean(axis=1)
    return {"slow_classes": "/".join(map(str, classes)),
            "final_slow_class_accuracy": float(acc.iloc[-1]),
            "mean_slow_class_accuracy": float(acc.mean())}


def training_path(t: dict) -> str:
    """The path as taken: jobs with a client regulariser always train one by one."""
    if not t["regularized_jobs"] or t["path"] == "sequential":
        return t["path"]
    if not t["batched_jobs"]:
        return "sequential (fallback: client regularizer)"
    return f"{t['path']}, regularised jobs sequential"


def effective_server_step(step: dict) -> float | None:
    """Σ_v ‖x_{v+1} − x_v‖ / Σ_i ‖Δ_i‖: how much of the clients' updates reaches the
    server model, per arrival on average (FedAsync at τ = 0: α; FedBuff without momentum
    on K parallel updates: η_g·s(τ)/K). Step-size differences between methods show here
    at a glance, so a leaderboard does not silently rank step sizes."""
    return step["moved"] / step["delta"] if step["delta"] > 0 else None


def summarise(config: dict, log: RunLog, schedule: Schedule, trace: Trace) -> dict:
    """The run's summary.json. Accuracy columns are the test set's, or the validation
    split's in a run that evaluates on validation only (``evaluated_on`` says which)."""
    curve = pd.DataFrame(log.curve)
    acc = curve[headline(log.curve[-1], "accuracy")]
    staleness = np.array([a[3] for a in log.arrivals]) if log.arrivals else np.zeros(1)
    n = max(len(log.arrivals), 1)
    target = config["setup"]["target_accuracy"]
    return {
        **slow_class_accuracy(curve, trace_slow_classes(trace.kind, trace.params)),
        "run_id": run_id(config),
        "task": config["task"], "method": config["method"], "seed": config["seed"],
        "evaluated_on": config["setup"]["evaluate_on"],
        "final_accuracy": float(acc.iloc[-1]),
        "best_accuracy": float(acc.max()),
        "target_accuracy": target,
        "time_to_target": time_to_target(pd.DataFrame({"time": curve["time"], "accuracy": acc}), target),
        "final_time": float(curve["time"].iloc[-1]),
        "arrivals": len(log.arrivals),
        "versions": int(curve["version"].iloc[-1]),
        "mean_staleness": float(staleness.mean()),
        "p95_staleness": float(np.percentile(staleness, 95)),
        "max_staleness": int(staleness.max()),
        "schedule_hash": schedule.hash,
        "dropped_jobs": schedule.dropped,   # clients that went offline mid-job (availability windows)
        "diverged": log.diverged_at is not None,
        "diverged_at": log.diverged_at,
        "diverged_reason": log.diverged_reason,
        "max_live_bases": log.max_live_bases,
        "seconds": log.seconds,
        "server_ms_per_arrival": 1000 * log.seconds["server"] / n,
        "effective_server_step": effective_server_step(log.step),
        "training_path": training_path(log.training),
        "training": log.training,
    }


# -- the run ---------------------------------------------------------------------------
def execute(config: dict, task, data: TaskData, opts: RunOptions,
            on_progress: Callable | None = None) -> tuple[dict, bool]:
    """Run one config unless its results exist; resume it from its checkpoint if one is
    there. Returns (summary, ran_now)."""
    rid = run_id(config)
    folder = run_dir(opts.results, config["task"], config["method"], rid)
    if not opts.force:
        done = finished_summary(folder)
        if done is not None:
            return done, False
    ensure_writable(folder)
    # one process per run: another process running the same run (the same command started
    # twice, or two sweeps sharing a results folder) is waited for, never run again, so a
    # run folder's files always come from one process
    locks = Path(opts.results) / ".locks"   # beside the runs, never inside a run or method folder
    locks.mkdir(exist_ok=True)
    lock = FileLock(str(locks / f"{config['task']}.{config['method']}.{rid}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        warnings.warn(f"{config['task']}/{config['method']} seed {config['seed']} ({rid}) is running in "
                      "another process; waiting for it to finish", stacklevel=2)
        lock.acquire()
    try:
        if not opts.force:
            done = finished_summary(folder)
            if done is not None:   # the other process finished it meanwhile
                return done, False
        return _execute_locked(config, task, data, opts, on_progress, rid, folder)
    finally:
        lock.release()


def _execute_locked(config: dict, task, data: TaskData, opts: RunOptions, on_progress, rid: str,
                    folder: Path) -> tuple[dict, bool]:
    ckpt_path = folder / checkpoint.NAME
    method_cls = get_method(config["method"])
    setup, seed, device = config["setup"], config["seed"], torch.device(config["device"])

    data = prepare_data(data, setup, seed)
    build = task.model_builder(setup, data)
    torch.manual_seed(seed)          # the same initial model for every method of this seed
    model = build().to(device)
    layout = Layout.of(model)
    params = layout.flatten(model).clone()
    trace = build_trace(config, data)
    schedule = build_schedule(config, method_cls.synchronous, trace)
    ctx = ServerContext(num_clients=setup["num_clients"], concurrency=setup["concurrency"],
                        num_classes=data.num_classes, seed=seed, device=device, layout=layout,
                        build_model=build, local=setup["local"], extras=data.extras, plan=run_plan(schedule))
    method = method_cls(ctx, params, **config["method_params"])
    sim, path = build_simulator(config, method, schedule, data, build, model, layout, opts.batch_clients)
    if not opts.force and ckpt_path.exists():
        sim.load_state_dict(checkpoint.load(ckpt_path, rid))
    sim.log.training.update(path=path.describe(), reason=path.reason, requested=str(opts.batch_clients))

    write_json(folder / "config.json", config)
    log = sim.run(on_progress, checkpoint.Writer(ckpt_path, rid, opts.checkpoint_every, opts.checkpoint_minutes))
    write_csv(folder / "curve.csv", pd.DataFrame(log.curve))
    write_csv(folder / "arrivals.csv",
              pd.DataFrame(log.arrivals, columns=["arrival", "client", "time", "staleness", "base_version"]))
    summary = {**summarise(config, log, schedule, trace), **method.metrics(), **engagement_fields(method),
               "threads": torch.get_num_threads(), "machine": machine(config["device"]),
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(folder / "summary.json", summary)
    if opts.keep_checkpoints:
        checkpoint.save(ckpt_path, rid, sim.state_dict())
    else:
        ckpt_path.unlink(missing_ok=True)
    return summary, True


def preflight(configs: list[dict], task, data: TaskData) -> None:
    """Build, without training, everything each distinct run needs (its data view, model,
    trace, schedule and method), so that a run that cannot start fails before the first
    one starts. Seeds never decide whether a run can start, so each setup and method is
    checked once, on ``data`` (the first run's)."""
    seen = set()
    for config in configs:
        key = run_id({**config, "seed": 0})
        if key in seen:
            continue
        seen.add(key)
        setup, device = config["setup"], torch.device(config["device"])
        method_cls = get_method(config["method"])
        view = prepare_data(data, setup, config["seed"])
        build = task.model_builder(setup, view)
        with torch.random.fork_rng(devices=[]):   # the runs' own seeding starts later
            model = build().to(device)
            layout = Layout.of(model)
            schedule = build_schedule(config, method_cls.synchronous, build_trace(config, view))
            ctx = ServerContext(num_clients=setup["num_clients"], concurrency=setup["concurrency"],
                                num_classes=view.num_classes, seed=config["seed"], device=device,
                                layout=layout, build_model=build, local=setup["local"], extras=view.extras,
                                plan=run_plan(schedule))
            method_cls(ctx, layout.flatten(model).clone(), **config["method_params"])
