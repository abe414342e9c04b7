"""Console output and the one way bad input leaves the CLI: a line, exit code 2."""
from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from asyncfl_bench.errors import UserError


out = Console()


err = Console(stderr=True)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings reach the user as one clean line (``warning: ...``), never with a source line."""
    text = " ".join(str(message).split())
    err.print(f"[bold yellow]warning:[/] {escape(text)}", highlight=False, soft_wrap=True)


def user_errors(fn):
    """Bad input → one line on stderr, exit code 2, no traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            # escaped: messages quote user text such as KIND[:k=v] that is not markup
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            err.print("interrupted: finished runs are kept; rerun the same command to do the rest",
                      highlight=False)
            raise typer.Exit(2)
    return wrapper


def parse_seeds(text: str) -> list[int]:
    seeds = []
    try:
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, dash, hi = part.partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(part)]
    except ValueError:
        raise UserError(f"--seeds '{text}' is not a list of integers; fix: write e.g. 0,1,2 or 0-4") from None
    if not seeds:
        raise UserError("--seeds is empty; fix: write e.g. --seeds 0,1,2")
    return list(dict.fromkeys(seeds))   # a seed named twice runs once
