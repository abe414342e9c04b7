"""``report``: the leaderboard and plots of a results folder."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from asyncfl_bench.cli.console import err, out, user_errors


@user_errors
def report(
    results: Path = typer.Option(Path("results"), help="Results folder to read."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Where to write the leaderboard and plots "
                                                               "(default: RESULTS/report)."),
):
    """Leaderboard (terminal, Markdown, CSV) and plots from a results folder."""
    from asyncfl_bench.results.report import build_report
    from asyncfl_bench.results.terminal import print_leaderboard

    target = out_dir or results / "report"
    board, written = build_report(results, target)
    print_leaderboard(out, board)   # as many columns as the terminal fits
    names = ", ".join(p.name for p in written)
    out.print(escape(f"wrote to {target}: {names}"), highlight=False)   # wraps between file names
    for warning in board.attrs.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
