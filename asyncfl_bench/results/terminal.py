"""The leaderboard in a terminal: one table per task/preset that fits the console width.

Columns are added in order of importance while the table still fits, so a narrow
terminal shows fewer columns, never a number folded over lines; cells never wrap.
Piped output (not a terminal) is plain: no box drawing, no colour.
"""
from __future__ import annotations

import pandas as pd
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from asyncfl_bench.results.columns import DEFAULT, IMPORTANCE, label, ranking_groups

# the full set is in leaderboard.md/.csv; these say too little in 80 columns to earn a place
TERMINAL_COLUMNS = [c for c in IMPORTANCE if c not in ("targets", "schedule")]
# text may be cut short with an ellipsis; a number never is (the columns are chosen to fit,
# so "fold" is reached only when even the first two columns are wider than the console)
TEXT_COLUMNS = {"method", "diverged", "engaged", "hyperparameters"}


def _heading(column: str) -> str:
    """The column's label on two lines, broken at the space nearest its middle (a narrow
    column for a long label)."""
    text = label(column)
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if not spaces:
        return text
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2))
    return text[:cut] + "\n" + text[cut + 1:]


def method_width(console: Console) -> int:
    """The most the method column takes: a long variant label (runs of one method whose
    settings differ) folds over lines rather than pushing every number off the screen."""
    return max(16, console.width // 3)


def _table(group: pd.DataFrame, columns: list[str], plain: bool, title: str, widest_method: int) -> Table:
    table = Table(title=Text(title), box=None if plain else box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  header_style="" if plain else "bold", title_style="" if plain else "bold")
    for col in columns:
        if col == "method":   # folded whole, never cut short: two variants may differ only at the end
            table.add_column(_heading(col), overflow="fold", max_width=widest_method)
            continue
        text = col in TEXT_COLUMNS
        table.add_column(_heading(col), no_wrap=True, overflow="ellipsis" if text else "fold",
                         justify="left" if text else "right")
    for row in group[columns].itertuples(index=False):
        # Text, not str: a variant label such as fedbuff[tuned] is not Rich markup
        table.add_row(*(Text(str(v)) for v in row))
    return table


def fitting_columns(console: Console, group: pd.DataFrame, plain: bool, title: str) -> list[str]:
    """The most important columns of ``group`` whose table fits ``console.width``; columns
    that say nothing here (no run diverged, every run on default values) are left out."""
    candidates = [c for c in TERMINAL_COLUMNS if c in group.columns]
    for col, nothing in (("diverged", {"0"}), ("hyperparameters", {"default"}), ("effective_step", {"—"}),
                         ("engaged", {"yes", "—"})):
        if col in candidates and group[col].astype(str).isin(nothing).all():
            candidates.remove(col)
    chosen = candidates[:1]
    for col in candidates[1:]:
        trial = [c for c in candidates if c in chosen or c == col]
        # measured without the console's limit, which would clamp the answer to fit
        table = _table(group, trial, plain, title, method_width(console))
        width = Measurement.get(console, console.options.update_width(10_000), table).maximum
        if width <= console.width:
            chosen = trial
    return chosen


def print_leaderboard(console: Console, board: pd.DataFrame) -> None:
    """One table per ranking (task, preset, default or tuned hyperparameters with the
    budget, named in its title), as wide as the console allows, then which columns were
    left out (leaderboard.md has them all)."""
    plain = not console.is_terminal
    for task, preset, hyper, group in ranking_groups(board):
        title = f"{task} · preset {preset} · {'default' if hyper == DEFAULT else hyper} hyperparameters"
        # the title says default or tuned for every row
        columns = fitting_columns(console, group.drop(columns="hyperparameters"), plain, title)
        console.print(_table(group, columns, plain, title, method_width(console)))
        left_out = [c for c in group.columns if c not in columns and c not in ("task", "preset", "hyperparameters")]
        if left_out:
            # prose, so it wraps at the console's width like the table
            console.print(Text(f"more columns in leaderboard.md: {', '.join(left_out)}"),
                          style=None if plain else "dim", highlight=False)
