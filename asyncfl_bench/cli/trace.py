"""``asyncfl-bench trace``: make, inspect, schedule and import delay traces."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from asyncfl_bench.cli.console import out, user_errors
from asyncfl_bench.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,   # help is plain text: [ray] and KIND[:k=v] print as written
                  help="Shared delay traces: generate (`make`), import FedScale's (`import`), "
                       "inspect (`show`), and write the job sequence (`schedule`).")


TRACE_HELP = "A trace file (.csv/.parquet) or KIND[:k=v,...] (see `asyncfl-bench list`)."


def _class_counts(task_name: str, preset: str, num_clients: int, seed: int, data_dir: Optional[Path]):
    """Per-client class counts of a task's partition (what intertwined delays by)."""
    from asyncfl_bench.config.settings import SETUP_DEFAULTS, deep_merge
    from asyncfl_bench.simulation.run import class_counts
    from asyncfl_bench.config.registry import get_task

    task = get_task(task_name)
    if preset not in task.presets:
        raise UserError(f"unknown preset '{preset}' for task '{task.name}'; valid: {', '.join(task.presets)}")
    overrides = copy.deepcopy(task.presets[preset])
    overrides.pop("methods", None)
    setup = deep_merge(deep_merge(SETUP_DEFAULTS, getattr(task, "setup_defaults", {})), overrides)
    setup["num_clients"] = num_clients
    return class_counts(task.load(setup, seed, data_dir))


def _trace(spec: str, clients: int, seed: int, task: Optional[str], preset: str, data_dir: Optional[Path]):
    from asyncfl_bench.config.spec import parse_spec
    from asyncfl_bench.traces.generators import is_trace_file, make_trace

    counts = None
    if not is_trace_file(spec) and parse_spec(spec, "trace")[0] == "intertwined":
        if task is None:
            raise UserError("trace 'intertwined' delays the clients holding chosen classes, so it needs a "
                            "partition; fix: add --task TASK [--preset P]")
        counts = _class_counts(task, preset, clients, seed, data_dir)
    return make_trace(spec, clients, seed, counts)


def _clients_of(spec: str, clients: Optional[int]) -> int:
    from asyncfl_bench.traces.generators import is_trace_file
    if is_trace_file(spec):
        from asyncfl_bench.traces.file import read_trace
        return read_trace(spec).num_clients
    if clients is None:
        raise UserError("--clients N is needed to generate a trace")
    if clients < 1:
        raise UserError(f"--clients must be >= 1, got {clients}")
    return clients


@app.command()
@user_errors
def make(
    kind: str = typer.Option(..., help="KIND[:k=v,...], e.g. fedrevive, pareto:shape=1.5, "
                                       "intertwined:classes=3,slow=10."),
    clients: int = typer.Option(..., help="Number of clients."),
    seed: int = typer.Option(0, help="Generator seed."),
    out_path: Path = typer.Option(..., "--out", help="Trace file to write (.csv or .parquet)."),
    task: Optional[str] = typer.Option(None, help="intertwined only: the task whose partition decides "
                                                  "who is slow."),
    preset: str = typer.Option("ci", help="intertwined only: the task preset."),
    data_dir: Optional[Path] = typer.Option(None, help="intertwined only: local data folder."),
):
    """Generate a trace and write it as a plain table."""
    from asyncfl_bench.traces.generators import is_trace_file
    from asyncfl_bench.traces.file import write_trace

    if not is_trace_file(str(out_path)):
        raise UserError(f"--out {out_path}: use a .csv or .parquet file name")
    trace = _trace(kind, _clients_of(kind, clients), seed, task, preset, data_dir)
    out.print(f"wrote {write_trace(trace, out_path)} ({trace.num_clients} clients, kind {trace.kind})")


@app.command("import")
@user_errors
def import_(
    device: Path = typer.Argument(..., help="FedScale device capacity pickle "
                                            "({id: {'computation': ms/sample, 'communication': kbps}})."),
    out_path: Path = typer.Option(..., "--out", help="Trace file to write (.csv or .parquet)."),
    clients: int = typer.Option(..., help="Number of clients (device entries are taken in id order)."),
    behaviour: Optional[Path] = typer.Option(None, help="FedScale behaviour pickle (active/inactive windows)."),
    batch_size: int = typer.Option(20, help="Local batch size (FedScale's default 20)."),
    local_steps: int = typer.Option(20, help="Local steps per job (FedScale's default 20)."),
    model_kbit: float = typer.Option(8000.0, help="Model size in kbit, moved once each way."),
    augmentation: float = typer.Option(3.0, help="Forward+backward cost over a forward pass (FedScale: 3)."),
):
    """Convert FedScale's device traces (read with a plain-data-only unpickler)."""
    from asyncfl_bench.traces.fedscale import import_fedscale
    from asyncfl_bench.traces.file import read_trace

    path = import_fedscale(device, clients, out_path, behaviour, batch_size, local_steps, model_kbit, augmentation)
    trace = read_trace(path)
    out.print(f"wrote {path} ({trace.num_clients} clients; mean job "
              f"{trace.mean_duration().mean():.3g} s)")


def _schedule(spec, clients, seed, concurrency, arrivals, sync, task, preset, data_dir):
    from asyncfl_bench.traces.schedule import make_schedule

    trace = _trace(spec, _clients_of(spec, clients), seed, task, preset, data_dir)
    return trace, make_schedule(trace, concurrency, arrivals, seed, sync)


@app.command()
@user_errors
def schedule(
    trace: str = typer.Argument(..., help=TRACE_HELP),
    out_path: Path = typer.Option(..., "--out", help="CSV file for the job sequence."),
    clients: Optional[int] = typer.Option(None, help="Number of clients (generated traces)."),
    seed: int = typer.Option(0, help="The run seed (per-job jitter and client picks)."),
    concurrency: int = typer.Option(5, help="Jobs in flight at once."),
    arrivals: int = typer.Option(200, help="Arrivals to schedule (total_arrivals)."),
    sync: bool = typer.Option(False, help="Synchronous rounds (fedavg-sync) instead of asynchronous."),
    task: Optional[str] = typer.Option(None, help="intertwined only: the task."),
    preset: str = typer.Option("ci", help="intertwined only: the task preset."),
    data_dir: Optional[Path] = typer.Option(None, help="intertwined only: local data folder."),
):
    """Write the job sequence that a trace, seed and concurrency produce, with its hash."""
    from asyncfl_bench.results.store import write_csv
    from asyncfl_bench.traces.summary import schedule_frame

    _, sched = _schedule(trace, clients, seed, concurrency, arrivals, sync, task, preset, data_dir)
    write_csv(Path(out_path), schedule_frame(sched))
    dropped = f"; {sched.dropped} jobs dropped (client offline mid-job)" if sched.dropped else ""
    out.print(f"wrote {out_path} ({len(sched)} jobs){dropped}; schedule hash {sched.hash}")


@app.command()
@user_errors
def show(
    trace: str = typer.Argument(..., help=TRACE_HELP),
    clients: Optional[int] = typer.Option(None, help="Number of clients (generated traces)."),
    seed: int = typer.Option(0, help="The run seed."),
    concurrency: int = typer.Option(20, help="Jobs in flight, for the expected staleness."),
    arrivals: int = typer.Option(2000, help="Arrivals to simulate (no training)."),
    out_dir: Path = typer.Option(Path("trace-plots"), "--out", help="Folder for the PNG histograms."),
    task: Optional[str] = typer.Option(None, help="intertwined only: the task."),
    preset: str = typer.Option("ci", help="intertwined only: the task preset."),
    data_dir: Optional[Path] = typer.Option(None, help="intertwined only: local data folder."),
):
    """Summary statistics and duration/staleness histograms, from the schedule alone."""
    from asyncfl_bench.traces.generators import is_trace_file
    from asyncfl_bench.traces.plot import plot_trace
    from asyncfl_bench.traces.summary import trace_summary

    tr, sched = _schedule(trace, clients, seed, concurrency, arrivals, False, task, preset, data_dir)
    s = trace_summary(tr, sched)
    t = Table(title=f"trace {trace} · {s['clients']} clients · concurrency {concurrency} · "
                    f"{s['jobs']} arrivals · schedule {sched.hash}")
    t.add_column("statistic")
    for col in ("mean", "p5", "p50", "p95", "p99", "max"):
        t.add_column(col)
    d, c, e, st = s["duration"], s["client_mean_duration"], s["expected_client_duration"], s["staleness"]
    f = lambda v: "—" if v is None else f"{v:.3g}"
    t.add_row("job duration (s)", f(d["mean"]), f(d["p5"]), f(d["p50"]), f(d["p95"]), f(d["p99"]), "—")
    t.add_row("per-client expected duration (s)", f(tr.mean_duration().mean()), f(e["p5"]), f(e["p50"]),
              f(e["p95"]), "—", f(e["p100"]))
    t.add_row("per-client observed mean (s)", "—", f(c["p5"]), f(c["p50"]), f(c["p95"]), "—", f(c["p100"]))
    t.add_row("staleness (one update per arrival)", f(st["mean"]), "—", f(st["p50"]), f(st["p95"]),
              f(st["p99"]), str(st["max"]))
    out.print(t)
    dropped = f"; {sched.dropped} jobs dropped because their client went offline" if sched.dropped else ""
    out.print(f"virtual time {s['virtual_time']:.1f} s; {s['clients_seen']} clients took part{dropped}")
    stem = Path(trace).stem if is_trace_file(trace) else trace.replace(":", "_").replace(",", "_").replace("=", "")
    for path in plot_trace(sched, f"{trace} (M={concurrency})", out_dir, stem.replace("/", "-")):
        out.print(f"wrote {path}")
