"""``tune``: the same tuning budget for every method, on a validation split."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape
from rich.table import Table

from asyncfl_bench.cli.console import err, out, parse_seeds, user_errors
from asyncfl_bench.errors import UserError


@user_errors
def tune(
    task: str = typer.Option("digits", help="Task name (see `asyncfl-bench list`)."),
    preset: str = typer.Option("ci", help="Task preset."),
    method: str = typer.Option("all", help="Method name, a comma list, or `all`."),
    trials: int = typer.Option(20, min=1, help="Trials per method: the same budget for every method."),
    seeds: str = typer.Option("1000", help="Tuning seeds, one run each per trial (`1000-1002`); keep them "
                                           "apart from the reporting seeds (`run --tuned` refuses them)."),
    objective: str = typer.Option("mean_accuracy", help="On validation: mean_accuracy (over the run's time "
                                                        "window) | final_accuracy | time_to_target."),
    validation_fraction: float = typer.Option(0.1, help="Share of every client's data held out as the "
                                                        "validation split (not trained on)."),
    space: List[str] = typer.Option([], "--space", help="Add or replace a search dimension: "
                                                        "METHOD.PARAM=log|uniform:low=L,high=H. Repeatable."),
    sampler_seed: int = typer.Option(0, help="Seed of the TPE sampler."),
    startup_trials: int = typer.Option(0, min=0, help="TPE's random start-up trials (0: a quarter of --trials, "
                                                      "2 to 10). To extend a tune with a larger --trials, pass "
                                                      "the count it was made with (its tuned file records it)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    results: Path = typer.Option(Path("results"), help="Results folder: studies and trial runs go under "
                                                       "RESULTS/tuned/."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Tuned-values file (default "
                                                                "RESULTS/tuned/<task>-<preset>.json)."),
    set_: List[str] = typer.Option([], "--set", help="Override a setting for every trial: KEY=VALUE. "
                                                      "Repeatable; `run --tuned` needs the same."),
    trace: Optional[str] = typer.Option(None, help="Delay trace: a file (.csv/.parquet) or KIND[:k=v,...]; "
                                                   "overrides the preset's (as `run --trace`)."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with local copies of data sets."),
    jobs: int = typer.Option(1, min=1, help="Run up to N trial runs at once in local worker processes."),
    threads: int = typer.Option(0, min=0, help="torch threads per trial run (0: automatic: all cores in "
                                               "process, cores ÷ --jobs per worker)."),
    executor: str = typer.Option("local", help="local | ray."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (default: start a local Ray)."),
    batch_clients: str = typer.Option("auto", help="Train in-flight clients together: auto | off | N."),
):
    """Tune every method with N trials on a validation split, then write their best values.

    Each trial is a normal run per tuning seed, evaluated on validation data only (the
    test set is never read). Studies live in RESULTS/tuned/<task>-<preset>.db: an
    interrupted tune resumes where it stopped, and a larger --trials extends it. Apply
    the result with `asyncfl-bench run --tuned`."""
    from asyncfl_bench.config.registry import get_method, get_task, method_names
    from asyncfl_bench.config.settings import parse_overrides
    from asyncfl_bench.simulation.device import resolve_device
    from asyncfl_bench.simulation.executors import load_data
    from asyncfl_bench.traces.generators import check_spec, is_trace_file
    from asyncfl_bench.training.path import BatchClients
    from asyncfl_bench.tuning import tuned as tuned_file
    from asyncfl_bench.tuning.objective import check_objective
    from asyncfl_bench.tuning.space import method_space, parse_space_options
    from asyncfl_bench.tuning.study import (EDGE_SHARE, Execution, MethodStudy, TuneSpec, startup_trials_for,
                                            trial_config)
    from asyncfl_bench.tuning.study import tune as run_tune

    if not 0 < validation_fraction < 1:
        raise UserError(f"--validation-fraction must be in (0, 1), got {validation_fraction}; fix: e.g. 0.1")
    the_task = get_task(task)
    names = method_names(method)
    extra = parse_space_options(space, names)
    plans = [MethodStudy(get_method(n), method_space(get_method(n), extra.get(n))) for n in names]
    batch = BatchClients.parse(batch_clients)   # a bad --batch-clients fails before any trial
    overrides = parse_overrides(set_)
    if trace is not None:   # named as `run --trace` names it, so `run --tuned` finds the same setup
        overrides["trace"] = str(Path(trace).resolve()) if is_trace_file(trace) else trace
    spec = TuneSpec(the_task, preset, resolve_device(device), overrides, tuple(names), trials,
                    tuple(parse_seeds(seeds)), check_objective(objective), validation_fraction, sampler_seed,
                    startup_trials or startup_trials_for(trials))
    first = [trial_config(spec, p.method_cls, s, {}) for p in plans for s in spec.seeds]   # bad --set fails here
    for trace, n_clients in {(c["setup"]["trace"], c["setup"]["num_clients"]) for c in first}:
        check_spec(trace, n_clients)
    load_data(the_task, first[0], data_dir)   # missing or broken data fails before any trial
    target = out_file or tuned_file.default_path(results, the_task.name, preset)
    if target.exists():
        tuned_file.read(target)   # an unreadable file fails before any trial, and is never overwritten

    def report_round(rows):
        for m, number, params, value in rows:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
            err.print(f"{m} trial {number}: {shown} → {objective} {value:.4g}", highlight=False)

    execution = Execution(jobs, executor, address, err, {"data_dir": data_dir, "batch_clients": batch,
                                                         "threads": threads})
    content = run_tune(spec, plans, results, execution, report_round)
    written = tuned_file.write(target, content)
    table = Table(title=f"tuned · {the_task.name} · preset {preset} · {trials} trials × {len(spec.seeds)} "
                        f"seed(s) · {objective} on validation")
    for col in ("method", "best values", objective, "trial"):
        table.add_column(col)
    edge_notes = []
    for name in names:
        entry = written["methods"][name]
        value = "not reached" if entry["value"] is None else f"{entry['value']:.4g}"
        edges = entry.get("at_range_edge", {})
        table.add_row(name, ", ".join(f"{k}={v:.4g}" + (f" (at {edges[k]} edge)" if k in edges else "")
                                      for k, v in entry["params"].items()), value, str(entry["best_trial"]))
        for k, side in edges.items():
            edge_notes.append(f"{name}.{k}={entry['params'][k]:.4g} lies within {EDGE_SHARE:.0%} of the {side} edge "
                              f"of its range "
                              f"({entry['space'][k]}): the best value may lie beyond it; fix: widen it, e.g. "
                              f"--space {name}.{k}=log:low=...,high=... and tune again")
    out.print(table)
    out.print(f"TPE start-up: {spec.startup_trials} random trial(s) of {trials}", highlight=False)
    for note in edge_notes:
        err.print(f"[bold yellow]warning:[/] {escape(note)}", highlight=False, soft_wrap=True)
    out.print(f"wrote {target} — next: asyncfl-bench run --task {task} --preset {preset} --method {method} "
              f"--seeds 0-4 --tuned {target}")
