"""The ``asyncfl-bench`` command line: this module only assembles the sub-commands,
which never import it back."""
from __future__ import annotations

import gc
import warnings

# The cyclic collector at its default thresholds (a pass every 700 new objects) rescans
# everything torch and pandas create while they import, several times: 0.13 s of a 2.5 s
# digits ci run, 0.12 s of `list`, 0.4 s of a FedRevive ci run. The first threshold at
# 100,000 leaves the young garbage of a run's loop to a few larger passes (RSS +2 %).
gc.set_threshold(100_000, 50, 100)

import typer  # after the collector is set: typer and rich allocate on import

from asyncfl_bench.cli import claims, console, data, listing, report, run, trace, tune

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None,   # help is plain text: [ray] and KIND[:k=v] print as written
                  help="Benchmark staleness-mitigation methods for asynchronous federated learning.\n\n"
                       "Typical use: `asyncfl-bench run --task digits --method all --preset ci`, "
                       "then `asyncfl-bench report`.")


app.command()(run.run)
app.command()(run.check)
app.command()(report.report)
app.command("list")(listing.list_)
app.command()(tune.tune)
app.add_typer(trace.app, name="trace")
app.add_typer(data.data_app, name="data")
app.add_typer(claims.app, name="claims")


def main() -> None:
    warnings.showwarning = console.show_warning
    app()
