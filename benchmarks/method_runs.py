"""The runs the per-method speed benchmarks compare (``method_ratio.py``,
``server_flops.py``): a task preset's configs for the named methods at seed 0 on CPU,
FedBuff always among them, as the ratios' denominator; and the commit a timing ran on
(also ``vs_flsim.py``)."""
from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from asyncfl_bench.config.registry import get_method, get_task, method_names
from asyncfl_bench.config.settings import resolve


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--task", default="digits")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--methods", default="fedbuff,fedecho,fedgen,fedrevive")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None, help="append the table to this CSV")


def method_configs(args: argparse.Namespace) -> tuple[object, dict[str, dict]]:
    """(task, {method name: resolved config}), FedBuff first if it was not named."""
    names = method_names(args.methods)
    if "fedbuff" not in names:
        names.insert(0, "fedbuff")
    task = get_task(args.task)
    return task, {n: resolve(task, args.preset, get_method(n), 0, "cpu", {}, names) for n in names}


def write_table(table, out: Path | None) -> None:
    """Print the table; append it to ``out`` (a CSV) when given."""
    import pandas as pd

    with pd.option_context("display.width", 200, "display.precision", 3):
        print(table.to_string(index=False))
    if out is not None:
        table.to_csv(out, mode="a", header=not out.exists(), index=False)


def code_commit() -> str:
    """The short hash of the checkout these scripts lie in ("" outside git): which code was timed."""
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent)
    return git.stdout.strip() if git.returncode == 0 else ""
