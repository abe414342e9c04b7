"""``asyncfl-bench claims``: the methods' papers' claims, listed and checked by running them."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from asyncfl_bench.cli.console import err, out, parse_seeds, user_errors
from asyncfl_bench.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="The methods' papers' headline claims as runnable checks: `claims list`, then "
                       "`claims run ID|all --scale ci|small|paper`. A claim holds when the 95 % interval "
                       "of its paired effect over seeds lies on the paper's side of zero.")


@app.command("list")
@user_errors
def list_claims():
    """Every claim: its paper, where the paper says it, the statement and the scales it runs at."""
    from asyncfl_bench.claims.spec import catalog

    for claim in catalog().values():   # a block per claim: statements are sentences, not cells
        out.print(f"[bold]{claim.id}[/]  ({', '.join(claim.scales)})", highlight=False)
        out.print(escape(f"  {claim.paper}, {claim.where}: {claim.statement}"), highlight=False)
        out.print(escape(f"  paper: {claim.paper_figure} · {claim.metric}, {claim.arm} against "
                         f"{', '.join(claim.against)}"), highlight=False)
        if claim.notes:
            out.print(escape(f"  note: {claim.notes}"), highlight=False)
    out.print("run one: asyncfl-bench claims run ID --scale ci")


@app.command("run")
@user_errors
def run_claims(
    which: str = typer.Argument(..., metavar="ID|all", help="A claim id (see `claims list`), a comma list, or `all`."),
    scale: str = typer.Option("ci", help="ci (a minute or so per claim), small (CPU, about 10 minutes per "
                                         "seed and arm at most), paper (the authors' setting: GPUs)."),
    results: Path = typer.Option(Path("results"), help="Results folder: the claims' runs are ordinary runs "
                                                       "there (reused, resumed); the table goes to "
                                                       "RESULTS/claims/<scale>.csv."),
    seeds: Optional[str] = typer.Option(None, help="Seeds instead of the scale's own (e.g. 0-2)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with local copies of data sets."),
    threads: int = typer.Option(0, min=0, help="torch threads per run (0: all cores)."),
):
    """Run (or reuse) every run a claim needs at a scale; print and write the verdicts."""
    from asyncfl_bench.claims import plan as planning
    from asyncfl_bench.claims.spec import SCALES, select
    from asyncfl_bench.config.registry import get_task
    from asyncfl_bench.simulation.device import resolve_device
    from asyncfl_bench.simulation.executors import load_data, run_configs
    from asyncfl_bench.simulation.run import RunOptions, preflight
    from asyncfl_bench.traces.generators import check_spec
    import torch

    if scale not in SCALES:
        raise UserError(f"--scale {scale!r} unknown; valid: {', '.join(SCALES)}")
    dev = resolve_device(device)
    claims = select(which)
    if which == "all":   # a claim without this scale is said, not an error
        skipped = [c.id for c in claims if scale not in c.scales]
        claims = [c for c in claims if scale in c.scales]
        if skipped:
            err.print(f"no {scale} scale, not run: {', '.join(skipped)}", highlight=False)
    plans = []
    for c in claims:
        try:
            plans.append(planning.make_plan(c, scale, parse_seeds(seeds) if seeds else
                                            parse_seeds(c.scales[scale].seeds), dev, results))
        except UserError as e:
            if which != "all" or not c.scales[scale].tuned:
                raise
            # `all` goes on without a tuned claim whose tuned values are not there yet
            err.print(f"not run: {escape(str(e))}", highlight=False, soft_wrap=True)
    for p in plans:   # every run of every claim checked before the first one starts
        configs = p.all_configs()
        if not configs:   # a measurement: its parameters were checked by make_plan
            continue
        for spec, n in {(c["setup"]["trace"], c["setup"]["num_clients"]) for c in configs}:
            check_spec(spec, n)
        task = get_task(p.scale.task)
        preflight(configs, task, load_data(task, configs[0], data_dir))
    table_rows = []
    for p in plans:
        start = time.perf_counter()
        if p.claim.measurement:
            err.print(f"claim {p.claim.id} at {scale}: {p.claim.measurement}, {len(p.seeds)} seed(s)",
                      highlight=False)
            if threads:
                torch.set_num_threads(threads)
            planning.run_measurement(p, results, lambda line: err.print(line, highlight=False, soft_wrap=True))
        else:
            err.print(f"claim {p.claim.id} at {scale}: {len(p.all_configs())} runs", highlight=False)
            run_configs(p.all_configs(), RunOptions(results, data_dir=data_dir, threads=threads), console=err)
        rows = planning.rows(p, results)
        for r in rows:
            r["wall_seconds"] = round(time.perf_counter() - start, 1)
        table_rows += rows
        _write(results / "claims" / f"{scale}.csv", rows)   # each claim's verdict kept as soon as it is known
    _print(table_rows, scale)
    out.print(f"table in {results / 'claims' / f'{scale}.csv'}")


def _write(path: Path, rows: list[dict]) -> None:
    """Replace this claim's rows in the scale's table, keeping every other claim's."""
    import pandas as pd

    from asyncfl_bench.claims.plan import COLUMNS
    from asyncfl_bench.results.store import write_csv

    frame = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_csv(path)
        frame = pd.concat([old[~old["claim"].isin(frame["claim"])], frame], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv(path, frame[COLUMNS + ["wall_seconds"]].sort_values(["claim", "against"]))


def _print(rows: list[dict], scale: str) -> None:
    t = Table(title=f"claims at scale {scale}")
    for col in ("claim", "vs", "paper's figure", "measured (95 % CI)", "wins", "verdict"):
        t.add_column(col)
    colour = {"holds": "green", "does not hold": "red"}
    for r in rows:
        v = r["verdict"]
        t.add_row(r["claim"], r["against"], escape(r["paper_figure"]), r["measured"],
                  f"{r['wins']}/{r['pairs']}", f"[{colour[v]}]{v}[/]" if v in colour else v)
    out.print(t)
