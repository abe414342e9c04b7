"""One run, end to end: build everything from a resolved config, simulate, write results."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from asyncfl_bench.simulation import checkpoint
from asyncfl_bench.training.batched import BatchedTrainer
from asyncfl_bench.training.path import choose_path
from asyncfl_bench.config.settings import run_id
from asyncfl_bench.contract.method import ServerContext
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.config.registry import get_method
from asyncfl_bench.results.metrics import time_to_target
from asyncfl_bench.results.store import ensure_writable, finished_summary, run_dir, write_csv, write_json
from asyncfl_bench.traces.schedule import Schedule, make_schedule
from asyncfl_bench.simulation.simulator import RunLog, Simulator
from asyncfl_bench.contract.task import TaskData, hold_out_proxy
from asyncfl_bench.traces.generators import make_trace, slow_classes
from asyncfl_bench.training.local import LocalTrainer


def class_counts(data: TaskData) -> np.ndarray:
    """(clients, classes) sample counts: what an intertwined trace delays by."""
    y = data.y_train.cpu()
    return np.stack([torch.bincount(y[idx.cpu()], minlength=data.num_classes).numpy()
                     for idx in data.clients])


def build_schedule(config: dict, synchronous: bool, data: TaskData) -> Schedule:
    setup, seed = config["setup"], config["seed"]
    trace = make_trace(setup["trace"], setup["num_clients"], seed, class_counts(data))
    return make_schedule(trace, setup["concurrency"], setup["total_arrivals"], seed, synchronous)


def slow_class_accuracy(curve: pd.DataFrame, trace_spec: str) -> dict:
    """Accuracy on the classes an intertwined trace delays (their mean per evaluation
    point): final and averaged over the run. Empty for other traces."""
    classes = slow_classes(trace_spec)
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


def summarise(config: dict, log: RunLog, schedule: Schedule) -> dict:
    curve = pd.DataFrame(log.curve)
    staleness = np.array([a[3] for a in log.arrivals]) if log.arrivals else np.zeros(1)
    n = max(len(log.arrivals), 1)
    return {
        **slow_class_accuracy(curve, config["setup"]["trace"]),
        "run_id": run_id(config),
        "task": config["task"], "method": config["method"], "seed": config["seed"],
        "final_accuracy": float(curve["accuracy"].iloc[-1]),
        "best_accuracy": float(curve["accuracy"].max()),
        "target_accuracy": config["setup"]["target_accuracy"],
        "time_to_target": time_to_target(curve, config["setup"]["target_accuracy"]),
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
        "training_path": training_path(log.training),
        "training": log.training,
    }


def execute(config: dict, task, data: TaskData, results_root: Path, force: bool = False,
            on_progress: Callable | None = None, checkpoint_every: int = 0, checkpoint_minutes: float = 5.0,
            keep_checkpoints: bool = False, batch_clients: str = "auto") -> tuple[dict, bool]:
    """Run one config unless its results exist; resume it from its checkpoint if one is there.
    ``batch_clients`` (auto | off | N) picks sequential or vectorised local training; both
    give the same results within ``batched.TOLERANCE``, so it is not part of the run id.
    Returns (summary, ran_now)."""
    rid = run_id(config)
    folder = run_dir(results_root, config["task"], config["method"], rid)
    ckpt_path = folder / checkpoint.NAME
    if not force:
        done = finished_summary(folder)
        if done is not None:
            return done, False
    ensure_writable(folder)
    method_cls = get_method(config["method"])
    setup, seed, device = config["setup"], config["seed"], torch.device(config["device"])
    data = hold_out_proxy(data, setup["proxy_fraction"], seed)
    if data.extras.input_shape is None:   # what generators must produce
        data.extras.input_shape = tuple(data.x_train.shape[1:])
    build = task.model_builder(setup, data)
    torch.manual_seed(seed)          # the same initial model for every method of this seed
    model = build().to(device)
    layout = Layout.of(model)
    params = layout.flatten(model).clone()
    schedule = build_schedule(config, method_cls.synchronous, data)
    ctx = ServerContext(num_clients=setup["num_clients"], concurrency=setup["concurrency"],
                        num_classes=data.num_classes, seed=seed, device=device, layout=layout,
                        build_model=build, local=setup["local"], extras=data.extras)
    method = method_cls(ctx, params, **config["method_params"])
    augment = data.extras.augment
    trainer = LocalTrainer(build, layout, setup["local"], device, augment=augment)
    path = choose_path(batch_clients, model, layout, setup["local"], device, setup["concurrency"], data.x_train[:1])
    batched = BatchedTrainer(build, layout, setup["local"], device, augment) if path.group > 1 else None
    sim = Simulator(method, schedule, data, trainer, model, seed, setup["eval_every"], setup["eval_batch_size"],
                    batched, path.group)
    if not force and ckpt_path.exists():
        sim.load_state_dict(checkpoint.load(ckpt_path, rid))
    sim.log.training.update(path=path.describe(), reason=path.reason)
    write_json(folder / "config.json", config)
    log = sim.run(on_progress, checkpoint.Writer(ckpt_path, rid, checkpoint_every, checkpoint_minutes))
    write_csv(folder / "curve.csv", pd.DataFrame(log.curve))
    write_csv(folder / "arrivals.csv",
              pd.DataFrame(log.arrivals, columns=["arrival", "client", "time", "staleness", "base_version"]))
    summary = summarise(config, log, schedule)
    summary.update(method.metrics())
    summary["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    write_json(folder / "summary.json", summary)
    if keep_checkpoints:
        checkpoint.save(ckpt_path, rid, sim.state_dict())
    else:
        ckpt_path.unlink(missing_ok=True)
    return summary, True
