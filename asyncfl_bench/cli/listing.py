"""``list``: what can be run (tasks, methods, traces, staleness functions)."""
from __future__ import annotations


import typer
from rich.table import Table

from asyncfl_bench.cli.console import out, user_errors


@user_errors
def list_(params: bool = typer.Option(False, "--params",
                                      help="Show every method's hyperparameters and its tuning search space.")):
    """Tasks with their presets, methods with their sources, trace kinds."""
    from asyncfl_bench.config.registry import methods, task_families, tasks
    from asyncfl_bench.staleness import KINDS
    from asyncfl_bench.traces.generators import GENERATORS

    t = Table(title="tasks")
    for col in ("task", "presets", "description"):
        t.add_column(col)
    for name, cls in tasks().items():
        t.add_row(name, ", ".join(cls.presets), cls.description)
    for prefix, family in task_families().items():   # any path or dataset id after the colon
        spelling, line = family.usage[prefix]
        t.add_row(spelling, ", ".join(family.presets), line)
    out.print(t)
    m = Table(title="methods")
    for col in ("method", "source") + (("defaults", "search space (tune)") if params else ()):
        m.add_column(col)
    for name, cls in methods().items():
        row = [name, cls.source]
        if params:
            row.append(", ".join(f"{k}={v}" for k, v in cls.defaults.items()))
            row.append(", ".join(f"{k}={v}" for k, v in cls.search_space.items()) or "— (nothing to tune)")
        m.add_row(*row)
    out.print(m)
    out.print("traces: " + ", ".join(f"{k}[:{','.join(f'{p}={v}' for p, v in d.items())}]"
                                     for k, (_, d) in GENERATORS.items()))
    out.print("staleness functions: " + ", ".join(KINDS))
