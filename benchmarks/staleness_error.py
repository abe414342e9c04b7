"""How wrong is a stale update, and how much do DC-ASGD and gradient inversion fix?

What Wang & Gao's motivating figures measure (arXiv:2309.13536): the error of an
estimate of a client's *fresh* update against staleness τ. On real data
(scikit-learn digits, the ``ci`` preset's partition and model) this script builds a
server trajectory x_0 … x_T (each version the mean of K clients' deltas from the
current model), then, for probe clients, staleness τ and end points T, compares with
the *true fresh update* Δ_fresh — the client retrained from x_T, which a benchmark
can compute and a method never sees — these estimates of it:

* ``stale``:       the raw stale delta Δ(x_{T−τ}), its own job's batch order;
* ``dc-asgd-c``:   DC-ASGD with constant λ = 0.04;
* ``dc-asgd-a``:   DC-ASGD with adaptive λ, its mean square accumulated over the
  trajectory's updates as a server running it would have;
* ``gi-free``:     gradient inversion of the stale update with the authors' free label
  targets (gi-switch's default), cold start, then LocalUpdate(x_T; D_rec);
* ``gi-soft-ce``:  the same with soft cross-entropy labels;
* ``zero``:        sending nothing (relative L1 error 1, cosine distance 1);
* ``fresh-again``: a second fresh update from x_T with another batch order: the noise
  floor, the error no estimator of one run of the client can beat on average.

Every job draws its own batch order (independent job seeds), so no estimator shares
the fresh update's mini-batch noise. ``--client full-batch`` runs the reference
code's client instead (5 full-batch epochs, no momentum), where the batch order
does not matter and the noise floor is 0.

GI runs the client's own program (``LocalEmulator``) with gi-switch's inversion
settings (the paper's Table 1: Adam lr 1 on the inputs' sign, ×0.1 at 3/8, 5/8, 7/8,
inputs N(0, 1) boxed to [−2, 2], |D_rec| = ½|D_i|) but a CPU budget, ``--iterations``
(the paper's 15,000 take minutes per inversion on a CPU); ``--gi-lr`` sets the rate
for a cut budget.

Errors: cosine distance 1 − cos(Δ̂, Δ_fresh) and relative L1 ‖Δ̂ − Δ_fresh‖₁ / ‖Δ_fresh‖₁.
Each row also records ``misfit`` (the inversion's final relative L1 fit of the stale
update; at τ = 0 it is how well GI can represent the client at all) and ``drift``,
‖x_T − x_{T−τ}‖ as a share of the path length Σ_{v<T} ‖x_{v+1} − x_v‖ (the paper's
τ = 40 of 800 rounds is 5 % of its training). Writes ``staleness_error.csv`` (one row
per seed, client, T, τ and estimator), ``staleness_error_summary.csv`` (means and
standard errors over seeds × clients) and ``staleness_error.png``.

    python benchmarks/staleness_error.py --out /tmp/staleness_error
    # one seed per part, then the table and plot over all parts:
    python benchmarks/staleness_error.py --seeds 0 --out part0   # … part1, part2
    python benchmarks/staleness_error.py --combine part0 part1 part2 --out all
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from asyncfl_bench.methods.gi_switch import GISwitch
from asyncfl_bench.methods.gi_switch.estimate_error import ESTIMATORS, measure
from asyncfl_bench.tasks.digits import Digits

# stale and DC-ASGD nearly coincide: stale drawn dashed on top so neither hides the other
STYLE = {"stale": {"color": "black", "ls": "--", "lw": 1.6, "marker": "o", "ms": 3, "zorder": 4},
         "dc-asgd-c": {"color": "tab:orange", "lw": 2.6, "marker": "s", "ms": 5, "zorder": 2},
         "dc-asgd-a": {"color": "tab:green", "lw": 1.4, "marker": "^", "ms": 5, "zorder": 3},
         "gi-soft-ce": {"color": "tab:purple", "lw": 1.4, "marker": "v", "ms": 4, "zorder": 3},
         "gi-free": {"color": "tab:red", "lw": 1.8, "marker": "D", "ms": 4, "zorder": 5},
         "zero": {"color": "grey", "ls": ":", "lw": 1.2, "zorder": 1},
         "fresh-again": {"color": "tab:blue", "ls": "-.", "lw": 1.2, "zorder": 1}}


def show(rows: list[dict]) -> None:
    r0 = rows[0]
    print(f"seed {r0['seed']} client {r0['client']:2d} T={r0['T']:3d} τ={r0['tau']:3d} drift {r0['drift']:.2f}  "
          + "  ".join(f"{r['estimator']}: cos {r['cosine_distance']:.3f} L1 {r['relative_l1']:.3f}"
                      + (f" (misfit {r['misfit']:.3f})" if r["estimator"].startswith("gi") else "")
                      for r in rows), flush=True)


def run_seed(args, seed: int) -> pd.DataFrame:
    """The measurement (methods/gi_switch/estimate_error.py) on the digits ci preset."""
    params = {"taus": args.taus, "ends": args.ends, "clients": args.clients, "buffer": args.buffer,
              "client": args.client, "iterations": args.iterations, "rec_max": args.rec_max,
              "gi_lr": args.gi_lr or 0.0}
    return measure(Digits(), "ci", seed, params, on_row=show)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("staleness_error"))
    ap.add_argument("--taus", default="0,1,4,16,32")
    ap.add_argument("--ends", default="48,96", help="end versions T of the trajectory (several, well beyond τ)")
    ap.add_argument("--clients", type=int, default=5, help="probe clients (the largest ones)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--buffer", type=int, default=5, help="clients per trajectory version (K)")
    ap.add_argument("--client", choices=("ci", "full-batch"), default="ci",
                    help="the clients' program: the digits ci preset's, or the reference code's full-batch one")
    ap.add_argument("--iterations", type=int, default=1000, help="inversion budget per stale update (CPU)")
    ap.add_argument("--rec-max", type=int, default=0, help="cap on |D_rec| (0: ½|D_i|, the paper's)")
    ap.add_argument("--gi-lr", type=float, default=None,
                    help="the inversion's Adam rate (default: gi-switch's, Table 1's 1; the intertwined "
                         "presets' 50-iteration CPU budget uses 0.1)")
    ap.add_argument("--combine", type=Path, nargs="+", default=None,
                    help="folders of earlier parts (each with its staleness_error.csv): write the summary "
                         "and plot over all of them to --out, running nothing (same --iterations/--gi-lr/--client "
                         "as the parts, for the plot's title)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)   # tiny graphs: threads only add overhead

    t0 = time.perf_counter()
    if args.combine:
        frame = pd.concat([pd.read_csv(folder / "staleness_error.csv") for folder in args.combine],
                          ignore_index=True)
    else:
        frame = pd.concat([run_seed(args, int(s)) for s in args.seeds.split(",")], ignore_index=True)
    summary = (frame.groupby(["client_program", "T", "tau", "estimator"], sort=False)
               [["drift", "cosine_distance", "relative_l1", "misfit", "seconds"]]
               .agg(["mean", "sem"]).reset_index())
    summary.columns = ["_".join(c).strip("_") for c in summary.columns]
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "staleness_error.csv", index=False)
    summary.to_csv(args.out / "staleness_error_summary.csv", index=False)
    groups = frame.groupby(["seed", "client"]).ngroups
    plot(summary, args.out / "staleness_error.png", groups, args)
    cols = ["T", "tau", "estimator", "drift_mean", "cosine_distance_mean", "relative_l1_mean",
            "relative_l1_sem", "misfit_mean"]
    print(summary[cols].round(3).to_string(index=False))
    print(f"{time.perf_counter() - t0:.0f} s; wrote {args.out}")


def plot(summary: pd.DataFrame, path: Path, groups: int, args) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = sorted(summary["T"].unique())
    fig, axes = plt.subplots(len(ends), 2, figsize=(10, 3.6 * len(ends)), dpi=120, squeeze=False)
    for row, T in zip(axes, ends):
        at = summary[summary["T"] == T]
        for ax, metric, label in zip(row, ("cosine_distance", "relative_l1"),
                                     ("cosine distance to the fresh update", "relative L1 error")):
            for name in ESTIMATORS:
                s = at[at["estimator"] == name]
                x = s["tau"].to_numpy()
                ax.errorbar(np.maximum(x, 0.5), s[f"{metric}_mean"], yerr=s[f"{metric}_sem"], capsize=2,
                            label=name, **STYLE[name])
            drift = at[at["estimator"] == "stale"]
            labels = [f"{int(t)}\n{d:.0%}" for t, d in zip(drift["tau"], drift["drift_mean"])]
            ax.set_xscale("log", base=2)
            ax.set_xticks(np.maximum(drift["tau"].to_numpy(), 0.5), labels, fontsize=7)
            ax.minorticks_off()
            ax.set_xlabel(f"staleness τ (τ = 0 drawn at 0.5) / drift as a share of the path, T = {T}", fontsize=8)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"digits, {args.client} clients · error of stale-update estimates vs the true fresh update "
                 f"(mean ± s.e. over {groups} seed × client pairs; GI {args.iterations} iterations, "
                 f"lr {args.gi_lr if args.gi_lr is not None else GISwitch.defaults['gi_lr']:g})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
