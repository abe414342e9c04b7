"""Wang & Gao's comparison (their Tables 3–4): accuracy of the affected class under intertwined
data and device heterogeneity, direct and staleness-weighted aggregation against DC-ASGD's
first-order compensation and gradient inversion with switching.

Arms, all on the task preset's one schedule (``intertwined``: the holders of the affected
class train from a model several rounds old) and its one aggregation rule (K, η_g, no
staleness weight):

* ``direct``    FedBuff as the preset sets it (the paper's direct aggregation);
* ``weighted``  the same with FedBuff's staleness weight s(τ) = 1/√(1 + τ);
* ``dc-asgd``   DC-ASGD's compensated delta, aggregated by the same rule;
* ``gi-switch`` the gradient-inversion estimate with switching, same rule.

Each arm and seed runs through ``asyncfl-bench run`` and appends one row to ``--out`` at
once (rows already there are skipped; runs already in ``--results`` are reused), so an
interrupted measurement goes on where it stopped.

    python benchmarks/intertwined.py --task digits --seeds 0-4
    python benchmarks/intertwined.py --summary
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

from asyncfl_bench.results.store import iter_runs

HERE = Path(__file__).resolve().parent
ARMS = {"direct": ("fedbuff", []), "weighted": ("fedbuff", ["--set", "fedbuff.staleness=sqrt"]),
        "dc-asgd": ("dc-asgd", []), "gi-switch": ("gi-switch", [])}
KEEP = ("final_accuracy", "best_accuracy", "final_slow_class_accuracy", "mean_slow_class_accuracy",
        "mean_staleness", "p95_staleness", "max_staleness", "diverged")


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def run_arm(arm: str, seed: int, a) -> dict:
    method, extra = ARMS[arm]
    args = ["run", "--task", a.task, "--preset", a.preset, "--method", method, "--seeds", str(seed),
            "--results", str(a.results), "--threads", str(a.threads), *extra]
    print("$ asyncfl-bench", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "asyncfl_bench", *args], check=False)   # a diverged run exits 1
    staleness = "sqrt" if arm == "weighted" else "constant"
    for _, config, summary in iter_runs(a.results):
        if (config["task"], config["preset"], config["method"], config["seed"]) != (a.task, a.preset, method, seed):
            continue
        if method == "fedbuff" and config["method_params"]["staleness"] != staleness:
            continue
        return {"task": a.task, "preset": a.preset, "arm": arm, "method": method, "seed": seed,
                **{k: summary.get(k) for k in KEEP}, "seconds": summary["seconds"]["total"]}
    raise SystemExit(f"no finished run of {arm} seed {seed} under {a.results}")


def summary_table(out: Path) -> pd.DataFrame:
    f = pd.read_csv(out)
    return f.groupby(["task", "preset", "arm"]).agg(
        slow_final=("final_slow_class_accuracy", "mean"), slow_sd=("final_slow_class_accuracy", "std"),
        slow_mean=("mean_slow_class_accuracy", "mean"), final=("final_accuracy", "mean"),
        seeds=("seed", "count"), diverged=("diverged", "sum"), seconds=("seconds", "mean"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="digits")
    p.add_argument("--preset", default="intertwined")
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", type=Path, default=Path("results/bench-intertwined"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "intertwined.csv")
    p.add_argument("--summary", action="store_true")
    a = p.parse_args()
    if a.summary:
        print(summary_table(a.out).to_string(float_format=lambda v: f"{v:.3f}"))
        return
    done = set()
    if a.out.exists():
        f = pd.read_csv(a.out)
        done = set(zip(f["task"], f["preset"], f["arm"], f["seed"]))
    for seed in seeds_of(a.seeds):
        for arm in a.arms.split(","):
            if (a.task, a.preset, arm, seed) in done:
                continue
            row = run_arm(arm, seed, a)
            pd.DataFrame([row]).to_csv(a.out, mode="a", header=not a.out.exists(), index=False)


if __name__ == "__main__":
    main()
