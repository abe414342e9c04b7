"""Execute a list of resolved configs: in this process, in local worker processes
(``--jobs N``), or on a Ray cluster (``--executor ray``). Every path writes the
same results layout, and each run is skipped if finished and resumed if
checkpointed, so a sweep can be interrupted and restarted with any executor."""
from __future__ import annotations

import dataclasses
import json
import os

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from asyncfl_bench.config.registry import get_task
from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.simulation.simulator import headline

_DATA: dict = {}   # per process: (task, seed, device, setup) -> TaskData


def load_data(task, config: dict, data_dir):
    """The run's TaskData on its device, loaded once per process and setup."""
    key = (config["task"], config["seed"], config["device"], json.dumps(config["setup"], sort_keys=True))
    if key not in _DATA:
        _DATA.clear()   # one data set at a time per process keeps memory flat
        _DATA[key] = task.load(config["setup"], config["seed"], data_dir).to(config["device"])
    return _DATA[key]


def run_one(config: dict, opts: RunOptions, on_progress=None) -> tuple[dict, bool]:
    """One run, self-contained (what a worker process or a Ray task executes)."""
    if opts.threads > 0:
        torch.set_num_threads(opts.threads)
    task = get_task(config["task"])
    return execute(config, task, load_data(task, config, opts.data_dir), opts, on_progress)


def _status(summary: dict, ran: bool) -> str:
    return "diverged" if summary["diverged"] else ("ran" if ran else "skipped (done)")


def _in_process(configs, opts, console):
    if not console.is_terminal:   # piped: one whole line per finished run, never a cut-off bar
        rows = []
        for cfg in configs:
            summary, ran = run_one(cfg, opts)
            status = _status(summary, ran)
            rows.append((cfg, summary, status))
            console.print(f"{cfg['task']}/{cfg['method']} seed {cfg['seed']}: {summary['arrivals']} arrivals, "
                          f"t={summary.get('final_time', 0.0):.1f}s, acc={summary['final_accuracy']:.3f}, {status}",
                          highlight=False, soft_wrap=True)
        return rows
    rows = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("t={task.fields[vt]:>8.1f}s  acc={task.fields[acc]}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        for cfg in configs:
            total = cfg["setup"]["total_arrivals"]
            bar = progress.add_task(f"{cfg['task']}/{cfg['method']} seed {cfg['seed']}", total=total,
                                    vt=0.0, acc="  -  ")

            def on_progress(done, now, row, bar=bar):
                fields = {"vt": now}
                if row is not None:
                    fields["acc"] = f"{row[headline(row, 'accuracy')]:.3f}"
                progress.update(bar, completed=done, **fields)

            summary, ran = run_one(cfg, opts, on_progress)
            # a run skipped as done shows its recorded end, not t = 0
            progress.update(bar, completed=total, vt=summary.get("final_time", 0.0),
                            acc=f"{summary['final_accuracy']:.3f}" + ("" if ran else " (done)"))
            rows.append((cfg, summary, _status(summary, ran)))
    return rows


def _collect(futures_in_order, configs, console, wait_one):
    rows = [None] * len(configs)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        bar = progress.add_task(f"{len(configs)} runs", total=len(configs))
        for i, (summary, ran) in wait_one(futures_in_order):
            rows[i] = (configs[i], summary, _status(summary, ran))
            progress.advance(bar)
    return rows


def _local_processes(configs, opts, jobs, console):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_one, cfg, opts): i for i, cfg in enumerate(configs)}

        def wait_one(fs):
            for f in as_completed(fs):
                yield fs[f], f.result()
        return _collect(futures, configs, console, wait_one)


def _ray(configs, opts, address, console):
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray; fix: pip install 'asyncfl-bench[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONHASHSEED": "0"}})
    try:
        remote = ray.remote(run_one)
        refs = {}
        for i, cfg in enumerate(configs):
            gpus = 1 if cfg["device"].startswith("cuda") else 0   # a run's GPU need, declared to Ray
            refs[remote.options(num_cpus=max(opts.threads, 1), num_gpus=gpus).remote(cfg, opts)] = i

        def wait_one(pending):
            left = list(pending)
            while left:
                done, left = ray.wait(left, num_returns=1)
                yield pending[done[0]], ray.get(done[0])
        return _collect(refs, configs, console, wait_one)
    finally:
        if started:
            ray.shutdown()


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def threads_per_run(threads: int, jobs: int) -> int:
    """torch threads for each run: ``threads`` when given; else the driver's count in
    process, and cores ÷ jobs for worker processes, so that workers × threads never
    exceed the cores (oversubscribed, 2 workers × 2 threads on 2 cores ran a digits
    run 4–6× slower than 1 thread)."""
    if threads < 0:
        raise UserError(f"--threads must be >= 0 (0: automatic), got {threads}")
    if threads > 0:
        return threads
    return torch.get_num_threads() if jobs == 1 else max(1, usable_cores() // jobs)


def run_configs(configs: list[dict], opts: RunOptions, jobs: int = 1, executor: str = "local",
                address: str | None = None, console: Console | None = None) -> list[tuple]:
    """Execute every config; returns (config, summary, status) in the order given."""
    console = console or Console(stderr=True)
    opts = dataclasses.replace(opts, threads=threads_per_run(opts.threads, jobs if executor == "local" else 1))
    if executor == "ray":
        return [(c, sm, _other_path(st, sm, opts)) for c, sm, st in _ray(configs, opts, address, console)]
    if executor != "local":
        raise UserError(f"unknown executor '{executor}'; valid: local, ray")
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    rows = (_in_process(configs, opts, console) if jobs == 1
            else _local_processes(configs, opts, jobs, console))
    return [(cfg, summary, _other_path(status, summary, opts)) for cfg, summary, status in rows]


def _other_path(status: str, summary: dict, opts: RunOptions) -> str:
    """A reused run trained under another --batch-clients says so: the training path is
    not in the run id (its numbers differ only within float tolerance), so reuse is
    right, but the user asked for something else and should know."""
    asked = summary.get("training", {}).get("requested")
    if status != "skipped (done)" or asked is None or asked == str(opts.batch_clients):
        return status
    return f"skipped (done; trained with --batch-clients {asked}: {summary['training_path']})"
