"""``report``: the leaderboard and plots of a results folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from asyncfl_bench.cli.console import err, out, user_errors


@user_errors
def report(
    results: Path = typer.Option(Path("results"), help="Results folder to read."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where to write the leaderboard and plots "
                                                               "(default: RESULTS/report)."),
):
    """Leaderboard (terminal, Markdown, CSV) and plots from a results folder."""
    from asyncfl_bench.results.report import build_report

    board, written = build_report(results, out_dir or results / "report")
    # the terminal gets the headline columns; leaderboard.md/.csv hold them all
    cols = [c for c in ("task", "preset", "method", "final_acc", "slow_class_acc", "mean_acc_over_time", "ttt",
                        "speedup_vs_fedbuff", "wins_vs_fedbuff", "diverged", "seeds") if c in board.columns]
    table = Table(title="leaderboard (all columns: leaderboard.md)")
    short = {"final_acc": "final acc", "slow_class_acc": "slow-class acc", "mean_acc_over_time": "acc over time",
             "ttt": "time to target", "speedup_vs_fedbuff": "speedup", "wins_vs_fedbuff": "W/L vs fedbuff"}
    for col in cols:
        table.add_column(short.get(col, col), overflow="fold")
    for _, r in board[cols].iterrows():
        table.add_row(*[str(v) for v in r])
    out.print(table)
    for path in written:
        out.print(f"wrote {path}")
    for warning in board.attrs.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
