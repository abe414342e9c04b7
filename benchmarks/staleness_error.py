"""How wrong is a stale update, and how much do DC-ASGD and gradient inversion fix?

On real data (scikit-learn digits, the ``ci`` preset's partition, model and local
training) this script builds a server trajectory x_0 … x_T (each version is a
FedBuff-style mean of K clients' deltas from the current model), then, for probe
clients and staleness τ, compares with the *true fresh update* Δ_fresh — the
client retrained from x_T with the same mini-batch order, which a benchmark can
compute and a method never sees — these estimates:

* ``stale``:     the raw stale delta Δ(x_{T−τ});
* ``dc-asgd-c``: DC-ASGD with constant λ = 0.04;
* ``dc-asgd-a``: DC-ASGD with adaptive λ, its mean square accumulated over the
  trajectory's updates as a server running it would have;
* ``gi``:        gradient inversion of the stale update (cold start), then
  LocalUpdate(x_T; D_rec) with gi-switch's defaults but a CPU budget
  (``--iterations``, ``--rec-max``).

Errors: cosine distance 1 − cos(Δ̂, Δ_fresh) and relative L1 ‖Δ̂ − Δ_fresh‖₁ / ‖Δ_fresh‖₁.
Writes ``staleness_error.csv`` (one row per client, τ and estimator),
``staleness_error_summary.csv`` (means and standard errors over clients) and
``staleness_error.png``.

    python benchmarks/staleness_error.py --out /tmp/staleness_error
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from asyncfl_bench.config.settings import resolve
from asyncfl_bench.methods.dc_asgd import DCASGD, compensate
from asyncfl_bench.methods.gi_switch import GISwitch
from asyncfl_bench.methods.gi_switch.emulation import LocalEmulator
from asyncfl_bench.methods.gi_switch.inversion import Recovered, invert, relative_l1
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.tasks.digits import Digits
from asyncfl_bench.training.local import LocalTrainer, effective_lr, job_seed

ESTIMATORS = ("stale", "dc-asgd-c", "dc-asgd-a", "gi")
# stale and DC-ASGD nearly coincide: stale drawn dashed on top so neither hides the other
STYLE = {"stale": dict(color="black", ls="--", lw=1.6, marker="o", ms=3, zorder=4),
         "dc-asgd-c": dict(color="tab:orange", lw=2.6, marker="s", ms=5, zorder=2),
         "dc-asgd-a": dict(color="tab:green", lw=1.4, marker="^", ms=5, zorder=3),
         "gi": dict(color="tab:red", lw=1.6, marker="D", ms=4, zorder=3)}


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(1 - torch.nn.functional.cosine_similarity(a, b, dim=0))


def trajectory(trainer, data, x0, versions: int, k: int, seed: int, local: dict, dc_hp):
    """Server models x_0..x_versions (each a mean of k clients' deltas) and DC-ASGD-a's
    mean square of pseudo-gradients accumulated along the way."""
    rng = np.random.default_rng([seed, 0xB1])
    xs, ms, count, m = [x0], None, 0, dc_hp["ms_momentum"]
    for v in range(versions):
        deltas = []
        for c in rng.choice(len(data.clients), size=k, replace=False):
            idx = data.clients[c]
            p, _ = trainer.train(xs[-1], data.x_train[idx], data.y_train[idx], job_seed(seed, int(c), v))
            d = p - xs[-1]
            g = -d / effective_lr(local, len(idx))
            ms = (1 - m) * g * g if ms is None else ms * m + (1 - m) * g * g
            count += 1
            deltas.append(d)
        xs.append(xs[-1] + torch.stack(deltas).mean(0))
    return xs, ms / (1 - m ** count)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("staleness_error"))
    ap.add_argument("--taus", default="0,1,2,4,8,16,32,64")
    ap.add_argument("--clients", type=int, default=5, help="probe clients (the largest ones)")
    ap.add_argument("--warmup", type=int, default=16, help="versions before the earliest stale base")
    ap.add_argument("--buffer", type=int, default=5, help="clients per trajectory version (K)")
    ap.add_argument("--iterations", type=int, default=100, help="inversion budget per stale update")
    ap.add_argument("--rec-max", type=int, default=32, help="cap on |D_rec| (gi-switch's rec_max)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)   # tiny graphs: threads only add overhead

    taus = sorted({int(t) for t in args.taus.split(",")})
    task = Digits()
    config = resolve(task, "ci", get_method("fedbuff"), args.seed, "cpu", {}, list(methods()))
    setup, local = config["setup"], config["setup"]["local"]
    data = task.load(setup, args.seed)
    build = task.model_builder(setup, data)
    torch.manual_seed(args.seed)
    model = build()
    layout = Layout.of(model)
    trainer = LocalTrainer(build, layout, local, torch.device("cpu"))
    gi, dc = GISwitch.defaults, DCASGD.defaults
    t0 = time.perf_counter()
    T = args.warmup + max(taus)
    xs, ms_hat = trajectory(trainer, data, layout.flatten(model).clone(), T, args.buffer, args.seed, local, dc)
    x_now = xs[T]
    emulator = LocalEmulator(build(), layout, local)
    sizes = np.array([len(c) for c in data.clients])
    probes = np.argsort(-sizes, kind="stable")[:args.clients]
    rows = []
    for c in probes:
        c = int(c)
        idx = data.clients[c]
        n, seed = len(idx), job_seed(args.seed, c, 10_000)   # one batch order for stale and fresh
        eta = effective_lr(local, n)
        fresh_p, _ = trainer.train(x_now, data.x_train[idx], data.y_train[idx], seed)
        fresh = fresh_p - x_now
        for tau in taus:
            base = xs[T - tau]
            stale_p, _ = trainer.train(base, data.x_train[idx], data.y_train[idx], seed)
            stale = stale_p - base
            lam_a = dc["lam0"] / torch.sqrt(ms_hat + dc["eps"])
            gen = torch.Generator().manual_seed(args.seed * 1000 + c)
            init = Recovered.random(min(args.rec_max, max(1, round(gi["rec_fraction"] * n))),
                                    tuple(data.x_train.shape[1:]), data.num_classes, gen, std=gi["init_std"])
            t1 = time.perf_counter()
            rec, losses = invert(emulator, base, emulator.trainable(stale), init, n, seed, args.iterations,
                                 gi["gi_lr"], gi["signed"])
            gi_est = emulator.delta(x_now, rec.x, rec.label_logits, n, rec.seed)
            gi_seconds = time.perf_counter() - t1
            est = {"stale": stale, "dc-asgd-c": compensate(stale, base, x_now, dc["lam"], eta),
                   "dc-asgd-a": compensate(stale, base, x_now, lam_a, eta), "gi": gi_est}
            for name in ESTIMATORS:
                rows.append({"client": c, "samples": n, "tau": tau, "estimator": name,
                             "cosine_distance": cosine_distance(est[name], fresh),
                             "relative_l1": float(relative_l1(est[name], fresh)),
                             "inversion_loss": min(losses) if name == "gi" else np.nan,
                             "seconds": gi_seconds if name == "gi" else np.nan})
            print(f"client {c:2d} τ={tau:3d}  " + "  ".join(
                f"{r['estimator']}: cos {r['cosine_distance']:.3f} L1 {r['relative_l1']:.3f}" for r in rows[-4:]),
                flush=True)
    frame = pd.DataFrame(rows)
    summary = (frame.groupby(["tau", "estimator"])[["cosine_distance", "relative_l1"]]
               .agg(["mean", "sem"]).reset_index())
    summary.columns = ["_".join(c).strip("_") for c in summary.columns]
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "staleness_error.csv", index=False)
    summary.to_csv(args.out / "staleness_error_summary.csv", index=False)
    plot(summary, args.out / "staleness_error.png", len(probes), args.iterations)
    print(summary.round(3).to_string(index=False))
    print(f"{time.perf_counter() - t0:.0f} s; wrote {args.out}")


def plot(summary: pd.DataFrame, path: Path, clients: int, iterations: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    for ax, metric, label in zip(axes, ("cosine_distance", "relative_l1"),
                                 ("cosine distance to the fresh update", "relative L1 error")):
        for name in ESTIMATORS:
            s = summary[summary["estimator"] == name]
            x = s["tau"].to_numpy()
            ax.errorbar(np.maximum(x, 0.5), s[f"{metric}_mean"], yerr=s[f"{metric}_sem"], capsize=2,
                        label=name, **STYLE[name])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("staleness τ (server versions; τ = 0 drawn at 0.5)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"digits · error of stale-update estimates vs the true fresh update "
                 f"(mean ± s.e. over {clients} clients; GI {iterations} iterations)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
