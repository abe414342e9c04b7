"""Every method tuned with the same budget, then run on the reporting seeds: one leaderboard.

For each method, in the order given: ``asyncfl-bench tune`` with the same trials, tuning
seed and objective for all (validation split only), then ``asyncfl-bench run --tuned``
on the reporting seeds, both through the command line a user runs. Each finished method
appends its rows (one per seed, with the tuned values it ran) to ``--out`` at once, so an
interrupted measurement goes on where it stopped: methods already in the file are
skipped, and tunes and runs already in ``--results`` are reused.

    python benchmarks/baselines_leaderboard.py --methods fedbuff,fadas,mifa   # one chunk
    python benchmarks/baselines_leaderboard.py --summary                      # the table
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from asyncfl_bench.results.store import iter_runs

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "asyncfl_bench"]


def cli(*args: str) -> None:
    print("$ asyncfl-bench", " ".join(args), flush=True)
    subprocess.run([*CLI, *args], check=True)


def measure(method: str, a) -> pd.DataFrame:
    common = ["--task", a.task, "--preset", a.preset, "--results", str(a.results), "--threads", str(a.threads)]
    cli("tune", *common, "--method", method, "--trials", str(a.trials), "--seeds", a.tune_seeds)
    cli("run", *common, "--method", method, "--tuned", "auto", "--seeds", a.seeds)
    tuned = json.loads((a.results / "tuned" / f"{a.task}-{a.preset}.json").read_text())
    values = tuned["methods"][method]["params"]
    rows = []
    for _, config, summary in iter_runs(a.results):
        # the tuned runs on the reporting seeds (trial runs live under tuned/, not here)
        if (config["task"], config["method"], config["preset"]) != (a.task, method, a.preset):
            continue
        if "tuning" not in config or any(config["method_params"].get(k) != v for k, v in values.items()):
            continue
        rows.append({"task": a.task, "preset": a.preset, "method": method, "seed": summary["seed"],
                     "trials": a.trials, "final_accuracy": summary["final_accuracy"],
                     "best_accuracy": summary["best_accuracy"], "time_to_target": summary.get("time_to_target"),
                     "server_ms_per_arrival": summary.get("server_ms_per_arrival"),
                     "seconds": summary["seconds"]["total"], "tuned": json.dumps(values, sort_keys=True)})
    return pd.DataFrame(rows).sort_values("seed")


def summary_table(out: Path) -> pd.DataFrame:
    frame = pd.read_csv(out)
    table = frame.groupby("method").agg(final=("final_accuracy", "mean"), sd=("final_accuracy", "std"),
                                        best=("best_accuracy", "mean"), seeds=("seed", "count"),
                                        server_ms=("server_ms_per_arrival", "mean"), tuned=("tuned", "first"))
    return table.sort_values("final", ascending=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digits")
    p.add_argument("--preset", default="ci")
    p.add_argument("--methods", default="all", help="comma list, or all (the registry's)")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--tune-seeds", default="1000")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=Path("results/bench-baselines"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "baselines_digits.csv")
    p.add_argument("--summary", action="store_true")
    a = p.parse_args()
    if a.summary:
        print(summary_table(a.out).to_string(float_format=lambda v: f"{v:.3f}"))
        return
    if a.methods == "all":
        from asyncfl_bench.config.registry import methods
        names = sorted(methods())
    else:
        names = a.methods.split(",")
    done = set(pd.read_csv(a.out)["method"]) if a.out.exists() else set()
    for method in names:
        if method in done:
            print(f"{method}: in {a.out}, skipped", flush=True)
            continue
        rows = measure(method, a)
        rows.to_csv(a.out, mode="a", header=not a.out.exists(), index=False)
        print(rows[["method", "seed", "final_accuracy"]].to_string(index=False), flush=True)


if __name__ == "__main__":
    main()
