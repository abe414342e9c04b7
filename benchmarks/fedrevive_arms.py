"""What FedRevive's distillation adds, arm by arm (issue: FedRevive as its authors ran it, slice 3).

Arms, all on one task preset's shared schedule, paired by seed:

* ``fedbuff``  the preset's FedBuff;
* ``A``  FedRevive at its defaults;
* ``B``  AFL-DW at its defaults (FedRevive without the distillation);
* ``C``  FedRevive with its raw server step η_g matched to FedBuff's per-arrival step,
  η_g = (η_FedBuff / K) · mean over the run's arrivals of s(τ) (FedBuff's own τ, from its
  ``arrivals.csv``): FedBuff moves the model by that much of each Δ per arrival;
* ``D``  AFL-DW at C's step (C against D: the revival's own contribution at a fair step);
* ``E``  C with probe q instead of the true label histogram (what probing costs).

Each finished run appends one row to ``--out`` at once, so an interrupted measurement
goes on where it stopped (rows already there are skipped; the runs are reused from
``--results``). Runs use one torch thread unless told otherwise.

    python benchmarks/fedrevive_arms.py --task digits --seeds 0-4
    python benchmarks/fedrevive_arms.py --summary        # the table from the CSV
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from asyncfl_bench.config.registry import get_method, get_task, methods
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.staleness import make_staleness

ARMS = {  # arm: (method, overrides besides the matched step, takes the matched step)
    "fedbuff": ("fedbuff", {}, False),
    "A": ("fedrevive", {}, False),
    "B": ("afl-dw", {}, False),
    "C": ("fedrevive", {}, True),
    "D": ("afl-dw", {}, True),
    "E": ("fedrevive", {"fedrevive.class_proportions": "probe"}, True),
}


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def matched_step(config: dict, folder: Path) -> float:
    """FedBuff's per-arrival coefficient on each Δ, averaged over the run's arrivals."""
    hp = config["method_params"]
    s = make_staleness(hp["staleness"])
    tau = pd.read_csv(folder / "arrivals.csv")["staleness"].to_numpy()
    return float(hp["server_lr"] / hp["buffer_size"] * np.mean([s(t) for t in tau]))


def mean_accuracy(folder: Path) -> float:
    """Accuracy averaged over the run's virtual time (trapezoids between evaluations)."""
    curve = pd.read_csv(folder / "curve.csv")
    t, a = curve["time"].to_numpy(), curve["accuracy"].to_numpy()
    return float(np.trapezoid(a, t) / (t[-1] - t[0])) if t[-1] > t[0] else float(a[-1])


def measure(args) -> None:
    task = get_task(args.task)
    done = pd.read_csv(args.out) if args.out.is_file() else pd.DataFrame(columns=["task", "preset", "seed", "arm"])
    opts = RunOptions(args.results, threads=args.threads)
    data_by_seed = {}
    for seed in seeds_of(args.seeds):
        step = None
        for arm, (method, sets, matched) in ARMS.items():
            overrides = dict(sets)
            if matched:
                overrides[f"{method}.server_lr"] = repr(step)
            cfg = resolve(task, args.preset, get_method(method), seed, "cpu", overrides, list(methods()))
            if seed not in data_by_seed:
                data_by_seed = {seed: task.load(cfg["setup"], seed, args.data_dir).to("cpu")}
            summary, _ = execute(cfg, task, data_by_seed[seed], opts)
            folder = args.results / cfg["task"] / method / summary["run_id"]
            if arm == "fedbuff":
                step = matched_step(cfg, folder)
            key = (done["task"].astype(str) == args.task) & (done["preset"].astype(str) == args.preset) \
                & (done["seed"].astype(int) == seed) & (done["arm"].astype(str) == arm)
            if key.any():
                continue
            diag = summary.get("diagnostics") or {}
            row = {"task": args.task, "preset": args.preset, "seed": seed, "arm": arm, "method": method,
                   "server_lr": cfg["method_params"]["server_lr"],
                   "final_accuracy": summary["final_accuracy"], "mean_accuracy": mean_accuracy(folder),
                   "time_to_target": summary["time_to_target"], "target": summary["target_accuracy"],
                   "effective_server_step": summary.get("effective_server_step"),
                   "mean_beta": diag.get("mean_beta"), "distilled_share": diag.get("distilled_share"),
                   "kd_to_delta_norm_ratio": diag.get("kd_to_delta_norm_ratio"),
                   "q_tv_distance": diag.get("q_tv_distance"), "engaged": summary.get("engaged"),
                   "threads": summary["threads"], "wall_s": summary["seconds"]["total"],
                   "run_id": summary["run_id"]}
            done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            done.to_csv(args.out, index=False)
            print(f"{args.task}/{args.preset} seed {seed} arm {arm} ({method}, η_g {row['server_lr']:.4g}): "
                  f"final {row['final_accuracy']:.3f}, mean {row['mean_accuracy']:.3f}", flush=True)


def summarise(out: Path) -> pd.DataFrame:
    """Per task and arm: means over seeds, paired wins/losses against FedBuff and, for the
    comparisons the arms exist for, the paired mean difference."""
    frame = pd.read_csv(out)
    rows = []
    for (task, preset), g in frame.groupby(["task", "preset"]):
        wide = g.pivot(index="seed", columns="arm", values="final_accuracy")
        for arm, a in g.groupby("arm"):
            paired = wide.dropna(subset=[arm, "fedbuff"]) if "fedbuff" in wide else wide.iloc[:0]
            ttt = a["time_to_target"]
            rows.append({"task": task, "preset": preset, "arm": arm, "method": a["method"].iloc[0],
                         "seeds": len(a), "server_lr": a["server_lr"].mean(),
                         "final": a["final_accuracy"].mean(), "final_sd": a["final_accuracy"].std(),
                         "mean_acc": a["mean_accuracy"].mean(),
                         "ttt": ttt.mean() if ttt.notna().all() else math.nan,
                         "reached": f"{int(ttt.notna().sum())}/{len(a)}",
                         "W/L vs fedbuff": f"{int((paired[arm] > paired['fedbuff']).sum())}/"
                                           f"{int((paired[arm] < paired['fedbuff']).sum())}",
                         "eff_step": a["effective_server_step"].mean(), "mean_beta": a["mean_beta"].mean(),
                         "kd/Δ": a["kd_to_delta_norm_ratio"].mean()})
        for x, y in (("C", "D"), ("A", "B"), ("E", "C")):
            if x in wide and y in wide:
                d = (wide[x] - wide[y]).dropna()
                print(f"{task}/{preset} {x} − {y}: {d.mean():+.4f} over {len(d)} seeds "
                      f"(wins {int((d > 0).sum())}, losses {int((d < 0).sum())})")
    return pd.DataFrame(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", default="digits")
    ap.add_argument("--preset", default="ci")
    ap.add_argument("--seeds", default="0-4")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--results", type=Path, default=Path("results/fedrevive-arms"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fedrevive_arms.csv"))
    ap.add_argument("--summary", action="store_true", help="only print the table from --out")
    args = ap.parse_args()
    if not args.summary:
        torch.set_num_threads(max(args.threads, 1))
        measure(args)
    with pd.option_context("display.width", 220, "display.max_columns", 30, "display.precision", 3):
        print(summarise(args.out).to_string(index=False))


if __name__ == "__main__":
    main()
