"""How wrong is a stale update, and how much do DC-ASGD and gradient inversion fix?
(Wang & Gao, AAAI 2025 / arXiv:2309.13536, the motivating Fig. 2 and Fig. 7.)

On a task's partition and model this builds a server trajectory x_0 … x_T (each version
the mean of K clients' deltas from the current model), then, for probe clients (the
largest), staleness τ and end points T, compares with the *true fresh update* Δ_fresh —
the client retrained from x_T, which a measurement can compute and a method never sees —
these estimates of it:

* ``stale``:       the raw stale delta Δ(x_{T−τ}), its own job's batch order;
* ``dc-asgd-c``:   DC-ASGD with constant λ (its default);
* ``dc-asgd-a``:   DC-ASGD with adaptive λ, its mean square accumulated over the
  trajectory's updates as a server running it would have;
* ``gi-free``:     gradient inversion of the stale update with the authors' free label
  targets (gi-switch's default), cold start, then LocalUpdate(x_T; D_rec);
* ``gi-soft-ce``:  the same with soft cross-entropy labels;
* ``zero``:        sending nothing (relative L1 error 1, cosine distance 1);
* ``fresh-again``: a second fresh update from x_T with another batch order: the noise
  floor, the error no estimator of one run of the client can beat on average.

Every job draws its own batch order (independent job seeds). ``client="full-batch"``
runs the reference code's client instead (5 full-batch epochs, no momentum), where the
batch order does not matter and the noise floor is 0. GI replays the client's own
program (``LocalEmulator``) with gi-switch's inversion settings (Table 1) at a budget
of ``iterations`` and rate ``gi_lr`` (the paper's 15,000 take minutes per inversion on a
CPU). Errors: cosine distance 1 − cos(Δ̂, Δ_fresh) and relative L1 ‖Δ̂ − Δ_fresh‖₁ /
‖Δ_fresh‖₁; each row also records the inversion's ``misfit`` and ``drift``,
‖x_T − x_{T−τ}‖ as a share of the path length.

Registered as the measurement ``gi-estimate-error`` (entry point group
``asyncfl_bench.measurements``) for ``asyncfl-bench claims``; ``benchmarks/
staleness_error.py`` prints and plots it.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from asyncfl_bench.config.registry import get_method
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.methods.dc_asgd import DCASGD, compensate
from asyncfl_bench.methods.gi_switch import GISwitch
from asyncfl_bench.methods.gi_switch.emulation import LocalEmulator
from asyncfl_bench.methods.gi_switch.inversion import InversionSettings, Recovered, invert, relative_l1
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import LocalTrainer, effective_lr, job_seed

ESTIMATORS = ("stale", "dc-asgd-c", "dc-asgd-a", "gi-soft-ce", "gi-free", "zero", "fresh-again")
# the reference code's client: 5 local epochs, full batch (local_bs 600 ≥ its 450–600
# samples), momentum 0 (update.py); the preset's lr is kept
FULL_BATCH = {"batch_size": 1_000_000, "momentum": 0.0, "epochs": 5, "iterations": 0}
# job-index offsets of the probe jobs: far from the trajectory's (< T), so every job's seed differs
STALE_JOB, FRESH_JOB, AGAIN_JOB = 100_000, 200_000, 300_000
# parameter: (default, type); every value a claim or the benchmark passes is checked against these
PARAMS = {"taus": ("0,1,4,16,32", str), "ends": ("48,96", str), "clients": (5, int), "buffer": (5, int),
          "client": ("ci", str), "iterations": (1000, int), "rec_max": (0, int), "gi_lr": (0.0, float)}
METRICS = ("relative_l1", "cosine_distance")


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


def parse_params(given: dict) -> dict:
    """The measurement's parameters: defaults, then ``given`` (text or values), each checked."""
    from asyncfl_bench.errors import UserError

    unknown = sorted(set(given) - set(PARAMS))
    if unknown:
        raise UserError(f"gi-estimate-error has no parameter {unknown[0]!r}; valid: {', '.join(PARAMS)}")
    out = {}
    for name, (default, kind) in PARAMS.items():
        value = given.get(name, default)
        if isinstance(value, (list, tuple)):   # already parsed (taus, ends): parsing is idempotent
            value = ",".join(map(str, value))
        try:
            out[name] = kind(value)
        except ValueError:
            raise UserError(f"gi-estimate-error {name}={value!r}: expected {kind.__name__}") from None
    if out["client"] not in ("ci", "full-batch"):
        raise UserError(f"gi-estimate-error client={out['client']!r}: valid: ci, full-batch")
    for name in ("taus", "ends"):
        try:
            out[name] = sorted({int(t) for t in str(out[name]).split(",")})
        except ValueError:
            raise UserError(f"gi-estimate-error {name}={out[name]!r}: expected integers like 16,32") from None
    if max(out["taus"]) > max(out["ends"]):
        raise UserError(f"gi-estimate-error: staleness {max(out['taus'])} exceeds every end version "
                        f"{out['ends']}; fix: larger ends or smaller taus")
    return out


def measure(task, preset: str, seed: int, params: dict, on_row=None) -> pd.DataFrame:
    """One row per probe (client, T, τ) and estimator for ``seed`` (CPU, one thread is best)."""
    p = parse_params(params)
    config = resolve(task, preset, get_method("fedbuff"), seed, "cpu", {}, ["fedbuff"])
    setup = config["setup"]
    local = {**setup["local"], **(FULL_BATCH if p["client"] == "full-batch" else {})}
    data = task.load(setup, seed)
    build = task.model_builder(setup, data)
    torch.manual_seed(seed)
    model = build()
    layout = Layout.of(model)
    trainer = LocalTrainer(build, layout, local, torch.device("cpu"))
    gi, dc = GISwitch.defaults, DCASGD.defaults
    ends = p["ends"]
    xs, ms_hat = trajectory(trainer, data, layout.flatten(model).clone(), max(ends), p["buffer"], seed, local, dc)
    steps = [float((xs[v + 1] - xs[v]).norm()) for v in range(max(ends))]
    emulator = LocalEmulator(build(), layout, local)
    box = (gi["box_low"], gi["box_high"]) if gi["boxed"] else None
    sizes = np.array([len(c) for c in data.clients])
    probes = np.argsort(-sizes, kind="stable")[:p["clients"]]
    lam_a = dc["lam0"] / torch.sqrt(ms_hat + dc["eps"])
    lr = p["gi_lr"] or gi["gi_lr"]
    rows = []
    for c in (int(c) for c in probes):
        idx = data.clients[c]
        xc, yc, n = data.x_train[idx], data.y_train[idx], len(idx)
        eta = effective_lr(local, n)
        rec_n = max(1, round(gi["rec_fraction"] * n))
        if p["rec_max"]:
            rec_n = min(rec_n, p["rec_max"])
        for T in ends:
            x_now = xs[T]
            fresh = emulator.trainable(trainer.train(x_now, xc, yc, job_seed(seed, c, FRESH_JOB + T))[0] - x_now)
            again = emulator.trainable(trainer.train(x_now, xc, yc, job_seed(seed, c, AGAIN_JOB + T))[0] - x_now)
            path = sum(steps[:T])
            for tau in (t for t in p["taus"] if t <= T):
                base = xs[T - tau]
                stale_seed = job_seed(seed, c, STALE_JOB + 1000 * T + tau)
                stale_full = trainer.train(base, xc, yc, stale_seed)[0] - base
                stale = emulator.trainable(stale_full)
                est = {"stale": stale, "zero": torch.zeros_like(stale), "fresh-again": again,
                       "dc-asgd-c": emulator.trainable(compensate(stale_full, base, x_now, dc["lam"], eta)),
                       "dc-asgd-a": emulator.trainable(compensate(stale_full, base, x_now, lam_a, eta))}
                misfit, seconds = {}, {}
                for label_model in ("soft-ce", "free"):
                    name = f"gi-{label_model}"
                    settings = InversionSettings(p["iterations"], lr, gi["signed"], box, label_model)
                    gen = torch.Generator().manual_seed(seed * 1000 + c)   # one cold start for both label models
                    init = Recovered.random(rec_n, tuple(data.x_train.shape[1:]), data.num_classes, gen,
                                            std=gi["init_std"], box=box)
                    t1 = time.perf_counter()
                    rec, losses = invert(emulator, base, stale, init, n, stale_seed, settings)
                    est[name] = emulator.delta(x_now, rec.x, rec.labels, n, rec.seed, label_model=label_model)
                    seconds[name], misfit[name] = time.perf_counter() - t1, min(losses)
                drift = float((x_now - base).norm()) / path
                for name in ESTIMATORS:
                    rows.append({"client_program": p["client"], "seed": seed, "client": c, "samples": n,
                                 "rec_samples": rec_n, "T": T, "tau": tau, "drift": drift, "estimator": name,
                                 "cosine_distance": cosine_distance(est[name], fresh) if name != "zero" else 1.0,
                                 "relative_l1": float(relative_l1(est[name], fresh)),
                                 "misfit": misfit.get(name, np.nan), "seconds": seconds.get(name, np.nan)})
                if on_row is not None:
                    on_row(rows[-len(ESTIMATORS):])
    return pd.DataFrame(rows)
