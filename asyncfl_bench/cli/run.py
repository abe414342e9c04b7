"""``run`` and ``check``: execute runs (or reuse finished ones) and gate them against a baseline."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from asyncfl_bench.cli.console import err, out, parse_seeds, user_errors
from asyncfl_bench.errors import UserError


@user_errors
def run(
    task: str = typer.Option("digits", help="Task name (see `asyncfl-bench list`)."),
    method: str = typer.Option("all", help="Method name, a comma list, or `all`."),
    seeds: str = typer.Option("0", help="Seeds: `0,1,2` or a range `0-4`."),
    preset: str = typer.Option("ci", help="Task preset: `ci` (minutes on a laptop CPU), `small`, ..."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    results: Path = typer.Option(Path("results"), help="Results folder."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting: KEY=VALUE (e.g. local.lr=0.1, "
                                                      "concurrency=10, fedbuff.buffer_size=5). Repeatable."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with local copies of data sets."),
    force: bool = typer.Option(False, help="Redo runs that already finished."),
    checkpoint_every: int = typer.Option(0, min=0, help="Checkpoint every N arrivals (0: by time only)."),
    checkpoint_minutes: float = typer.Option(5.0, min=0, help="Checkpoint every T minutes of wall time (0: off)."),
    keep_checkpoints: bool = typer.Option(False, help="Keep the final checkpoint of finished runs."),
    jobs: int = typer.Option(1, min=1, help="Run up to N runs at once in local worker processes."),
    threads: int = typer.Option(0, min=0, help="torch threads per run (0: automatic: all cores in "
                                               "process, cores ÷ --jobs per worker). CPU results depend "
                                               "on it; summary.json records it."),
    executor: str = typer.Option("local", help="local | ray (Ray is an optional extra: pip install "
                                                "'asyncfl-bench[ray]')."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    trace: Optional[str] = typer.Option(None, help="Delay trace: a file (.csv/.parquet) or KIND[:k=v,...]; "
                                                   "overrides the preset's (setup key `trace`)."),
    batch_clients: str = typer.Option("auto", help="Train in-flight clients together: auto | off | N "
                                                   "(group size). Same results within float tolerance, "
                                                   "so not part of the run id; summary.json records the path, "
                                                   "and a reused run trained on another setting says so."),
    tuned: Optional[str] = typer.Option(None, help="Apply tuned values: a file `tune` wrote, or `auto` for "
                                                   "RESULTS/tuned/<task>-<preset>.json. Each run takes its "
                                                   "method's values and the tune's validation hold-out; the "
                                                   "budget is recorded in its config (so in its run id)."),
    log: Optional[str] = typer.Option(None, help="Also export each run to a tracker: tensorboard (an "
                                                 "optional extra: pip install 'asyncfl-bench[tensorboard]')."),
    log_dir: Optional[Path] = typer.Option(None, help="Tracker folder (default RESULTS/tensorboard)."),
):
    """Run methods on a task under one shared delay trace.

    Finished runs are skipped; interrupted runs resume from their last checkpoint."""
    from asyncfl_bench.config.settings import parse_overrides, resolve
    from asyncfl_bench.config.registry import get_method, get_task, method_names
    from asyncfl_bench.config.settings import run_id
    from asyncfl_bench.results import tracker
    from asyncfl_bench.results.store import run_dir
    from asyncfl_bench.simulation.device import resolve_device
    from asyncfl_bench.simulation.executors import load_data, run_configs
    from asyncfl_bench.simulation.run import RunOptions, preflight
    from asyncfl_bench.traces.generators import check_spec, is_trace_file
    from asyncfl_bench.training.path import BatchClients

    # everything is resolved and checked before the first run starts: bad input costs no work
    tracker.check_tracker(log)
    the_task = get_task(task)
    names = method_names(method)
    seed_list = parse_seeds(seeds)
    dev = resolve_device(device)
    overrides = parse_overrides(set_)
    opts = RunOptions(results, force, data_dir, checkpoint_every, checkpoint_minutes, keep_checkpoints,
                      BatchClients.parse(batch_clients), threads)
    if trace is not None:
        # a file is named by its absolute path, so the run id does not depend on the working folder
        overrides["trace"] = str(Path(trace).resolve()) if is_trace_file(trace) else trace
    ordered = [resolve(the_task, preset, get_method(n), s, dev, overrides, names)
               for s in seed_list for n in names]
    if tuned is not None:
        from asyncfl_bench.tuning import tuned as tuned_file
        path = tuned_file.default_path(results, the_task.name, preset) if tuned == "auto" else Path(tuned)
        ordered = tuned_file.apply(ordered, path)
    for spec, n_clients in {(c["setup"]["trace"], c["setup"]["num_clients"]) for c in ordered}:
        check_spec(spec, n_clients)
    data = load_data(the_task, ordered[0], data_dir)   # missing or broken data fails here
    preflight(ordered, the_task, data)                 # and so does a run that cannot start
    rows = [(cfg["method"], cfg["seed"], summary, status)
            for cfg, summary, status in run_configs(ordered, opts, jobs, executor, address, err)]
    if log is not None:
        logdir = log_dir or tracker.default_logdir(results)
        for cfg in ordered:
            tracker.export_run(run_dir(results, cfg["task"], cfg["method"], run_id(cfg)), logdir)
        out.print(f"{log} events in {logdir}/ — view: tensorboard --logdir {logdir}")
    table = Table(title=f"{task} · preset {preset}")
    for col in ("method", "seed", "final acc", "best acc", "time to target", "wall s", "status"):
        table.add_column(col)
    for n, s, sm, status in rows:
        ttt = "—" if sm["time_to_target"] is None else f"{sm['time_to_target']:.1f}"
        table.add_row(n, str(s), f"{sm['final_accuracy']:.3f}", f"{sm['best_accuracy']:.3f}", ttt,
                      f"{sm['seconds']['total']:.1f}", status)
    out.print(table)
    out.print(f"results in {results}/ — next: asyncfl-bench report --results {results}")
    for n, s, sm, _ in rows:   # a method whose own mechanism never ran is its baseline under another name
        if sm.get("engaged") is False:
            err.print(f"[bold yellow]warning:[/] seed {s}: {escape(str(sm.get('engagement')))}",
                      highlight=False, soft_wrap=True)
    diverged = [(n, s, sm) for n, s, sm, _ in rows if sm["diverged"]]
    if diverged:
        n, s, sm = diverged[0]
        raise UserError(f"{len(diverged)} run(s) diverged, first {n} seed {s} at virtual time "
                        f"{sm['diverged_at']:.1f} ({sm.get('diverged_reason') or 'non-finite loss'}); they are "
                        f"recorded as diverged; fix: lower local.lr or the method's server_lr")


@user_errors
def check(
    baseline: Path = typer.Option(Path("results/baselines/ci.json"), help="Baseline JSON file."),
    tolerance: float = typer.Option(0.02, min=0, help="Allowed drop in accuracy (absolute) and growth in "
                                                      "time to target (relative)."),
    update: bool = typer.Option(False, "--update", help="Rewrite the baseline from the current results "
                                                        "(creating it from --task/--method/--seeds if absent)."),
    results: Path = typer.Option(Path("results"), help="Results folder for the runs the baseline names."),
    task: str = typer.Option("digits", help="With --update and no baseline yet: the task."),
    method: str = typer.Option("all", help="With --update and no baseline yet: the methods."),
    seeds: str = typer.Option("0", help="With --update and no baseline yet: the seeds."),
    preset: str = typer.Option("ci", help="With --update and no baseline yet: the preset."),
    tuned: Optional[Path] = typer.Option(None, help="With --update and no baseline yet: run with this tuned "
                                                    "file (`run --tuned`); the baseline records it, relative "
                                                    "to the baseline's folder."),
    threads: int = typer.Option(0, min=0, help="torch threads per run (0: all cores). A baseline's numbers "
                                               "hold for the thread count they were made with."),
):
    """CI regression gate: run (or reuse) the runs a baseline names and compare.

    Exit code 0: nothing worse than the baseline beyond the tolerance; 1: a regression
    (the table shows which metric of which run); 2: bad input."""
    from asyncfl_bench.results import gate
    from asyncfl_bench.config.settings import resolve
    from asyncfl_bench.config.registry import get_method, get_task, method_names
    from asyncfl_bench.simulation.executors import run_configs
    from asyncfl_bench.simulation.run import RunOptions

    from asyncfl_bench.tuning import tuned as tuned_file

    if baseline.exists() or not update:
        wanted = [(r["task"], r["preset"], r["method"], r["seed"], r.get("set", {}), r.get("tuned"))
                  for r in gate.read(baseline)["runs"]]
        names = {r[2] for r in wanted}
    else:
        names = method_names(method)
        rel = None if tuned is None else gate.relative_to_baseline(tuned, baseline)
        wanted = [(task, preset, n, s, {}, rel) for s in parse_seeds(seeds) for n in names]
    configs = []
    for t, p, m, s, o, tuned_rel in wanted:   # every run resolved (and its tuned file read) before any starts
        cfg = resolve(get_task(t), p, get_method(m), s, "cpu", dict(o), sorted(names))
        configs += tuned_file.apply([cfg], baseline.parent / tuned_rel) if tuned_rel else [cfg]
    done = run_configs(configs, RunOptions(results, threads=threads), console=err)
    if update:
        gate.write(baseline, [gate.entry(cfg, w[4], sm, w[5]) for w, (cfg, sm, _) in zip(wanted, done)])
        out.print(f"wrote {baseline} ({len(done)} runs)")
        return
    base_runs = gate.read(baseline)["runs"]
    rows = [row for b, (_, sm, _) in zip(base_runs, done) for row in gate.compare(b, sm, tolerance)]
    table = Table(title=f"check against {baseline} (tolerance {tolerance})")
    for col in ("run", "metric", "baseline", "current", "diff", "status"):
        table.add_column(col)
    fmt = lambda v: "not reached" if v is None else f"{v:.4g}"
    for r in rows:
        table.add_row(escape(r["run"]), r["metric"], fmt(r["baseline"]), fmt(r["current"]),
                      "—" if r["diff"] is None else f"{r['diff']:+.4g}",
                      "[red]WORSE[/]" if r["worse"] else "ok")
    out.print(table)
    bad = [r for r in rows if r["worse"]]
    if bad:
        out.print(f"[red]{len(bad)} metric(s) worse than the baseline beyond tolerance {tolerance}[/]")
        raise typer.Exit(1)
    out.print(f"all {len(base_runs)} runs within tolerance {tolerance} of the baseline")
