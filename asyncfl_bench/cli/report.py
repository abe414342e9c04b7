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
    html: bool = typer.Option(True, "--html/--no-html", help="Also write report.html: one self-contained page "
                                                             "(works offline) with every table and plot."),
):
    """Leaderboard (terminal, Markdown, CSV), plots and an HTML page from a results folder."""
    from asyncfl_bench.results.report import build_report
    from asyncfl_bench.results.terminal import print_leaderboard

    target = out_dir or results / "report"
    board, written = build_report(results, target, with_html=html)
    print_leaderboard(out, board)   # as many columns as the terminal fits
    if html:   # the path on one line, unbroken, to copy into a browser
        out.print(f"open {escape(str(written[0]))}", highlight=False, soft_wrap=True)
    others = [p.name for p in written if p.name != "report.html"]
    out.print(escape(f"wrote to {target}: {', '.join(others)}"), highlight=False)   # wraps between file names
    for warning in board.attrs.get("warnings", []):
        err.print(f"[bold yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
