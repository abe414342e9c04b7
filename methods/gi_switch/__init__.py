"""gi-switch: turn a stale update into a fresh one by gradient inversion, and
switch back to plain aggregation once that stops paying off.

Wang & Gao, "Tackling the Unlimited Staleness in Federated Learning with
Intertwined Data and Device Heterogeneities", arXiv:2309.13536 (2023).
Reference code: github.com/pittisl/FL-with-intertwined-heterogeneity.

For an update with staleness τ ≥ ``min_staleness`` from client i:

1. recover D_rec (inputs and soft labels, |D_rec| = ``rec_fraction``·|D_i|,
   at most ``rec_max``) by minimising L1(LocalUpdate(x_{t−τ}; D_rec), x_i)
   (``inversion.invert``), warm-started from client i's previous D_rec (the paper's cheaper
   initialisation when a client's data stays the same);
2. estimate the fresh update x̂_i = LocalUpdate(x_t; D_rec) and aggregate it in
   place of the stale one (rebased deltas, ``aggregation.CorrectedDeltaMethod``).

Switching: the server cannot know the error of x̂_i when it is made,
but it can later. When client i's next update arrives, computed from some
x_b with b ≥ the version its estimate targeted, the server measures
E1 = disparity(LocalUpdate(x_b; D_rec), fresh) and E2 = disparity(stale, fresh):
the error of the estimate and of the stale update against what the client
really sends. At the first E1 > E2 (of any client: like the paper, one
switch for the whole training) it switches back to plain aggregation; from
then on an update aggregates α·x̂ + (1 − α)·x_i^{t−τ} with α falling linearly
from 1 to 0 over ``blend_versions`` server versions, so accuracy does not drop
suddenly. After that no inversion runs.

Choices the paper leaves open, made here (deltas throughout: x̂ − x_t and
x_i − x_{t−τ}, so estimates from different bases are comparable):

* LocalUpdate is the client's own program replayed (``emulation.LocalEmulator``): its
  optimiser, step count, batch order and augmentation draws from the job's seed
  (``ClientUpdate.job_seed``, which the client's job trained under); D_rec keeps the
  seed it was fitted under;
* disparity is the relative L1 distance ‖a − fresh‖₁ / ‖fresh‖₁ on the
  trainable entries; E1 is measured at the fresh update's own base x_b, so
  both errors are taken against the same model;
* a cold start draws inputs from N(0, ``init_std``²) with ``init_std`` = 0.1, not
  the reference's N(0, 1) on standardised images: the server does not know the
  data's scale, and small inputs start the emulated update near zero (relative
  loss ≈ 1). On digits the fit after 100 iterations reached 0.59 from std 0.1
  and 1.07 from std 1;
* α falls linearly (``blend_versions``; 0 switches abruptly);
* the reference runs 10,000 inversion iterations on a GPU; ``iterations``
  defaults to 200 (CPU), and presets set what their budget allows.

Step size, audited against the paper and the reference code:

* Server step: the paper runs synchronous FedAvg rounds of 10 clients. In the
  reference (``streaming_fed.py``), a delayed client's contribution is rebased on the
  current model (x_t + Δ, or x_t + the GI estimate's delta) and the 10 models are
  averaged uniformly (``utils.average_weights`` divides by the count): η_g = 1 on the
  uniform MEAN of the deltas, one weight per update, no staleness scaling.
* Here: ``aggregation=fedbuff`` with K = 10, η_g = 1, μ = 0, s constant, uniform
  weights: the same rule, factor 1 (0.1 of each delta per arrival). Departure: the
  next K arrivals form the buffer instead of a synchronous round (the suite's schedule).
* Presets: intertwined (digits, femnist): K = 5, η_g = 1 → 0.2 of each delta per
  arrival, the K the other buffered methods get there; ci presets leave K = 10.
* ``gi_lr`` = 0.1 is the inversion's Adam rate, not a server step. The reference uses
  lr 1 on inputs drawn from N(0, 1) and boxed to [−2, 2]; here inputs start at
  ``init_std`` = 0.1 unboxed, and the rate is scaled with that init (lr/std = 1 in both).
* LocalUpdate's rate is the client's own (the replay above).

The server time spent inverting is recorded and reported by ``metrics``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.aggregation import CorrectedDeltaMethod
from asyncfl_bench.methods.gi_switch.emulation import LocalEmulator
from asyncfl_bench.methods.gi_switch.inversion import Recovered, invert, relative_l1
from asyncfl_bench.methods.gi_switch.switching import SwitchRule


class GISwitch(CorrectedDeltaMethod):
    name = "gi-switch"
    source = "Wang & Gao, arXiv:2309.13536 (2023)"
    defaults = {
        "min_staleness": 10,     # τ below this: the raw update, no inversion (the paper's delays are 10–40 rounds)
        "rec_fraction": 0.5,     # |D_rec| / |D_i|
        "rec_max": 128,          # cap on |D_rec| (the reference recovers 128 samples)
        "iterations": 200,       # inversion budget per stale update (reference: 10,000 on a GPU)
        "gi_lr": 0.1,            # Adam learning rate of the inversion
        "signed": True,          # sign of the inputs' gradient (reference: signed=True)
        "init_std": 0.1,         # std of a cold start's random inputs (reference: 1, on standardised images)
        "switch": True,          # False: never switch back (estimate every stale update)
        "blend_versions": 20,    # versions over which α falls from 1 to 0 after the switch
        **CorrectedDeltaMethod.defaults,
        # the paper averages each round's models (FedAvg, 10 clients a round): FedBuff with K = 10, η_g = 1
        "aggregation": "fedbuff",
    }
    search_space = {"server_lr": "log:low=0.1,high=5.0"}

    def __init__(self, ctx, params, **hparams):
        super().__init__(ctx, params, **hparams)
        hp = self.hp
        if ctx.extras.input_shape is None:
            raise UserError("gi-switch needs the task's input shape (TaskExtras.input_shape); "
                            "fix: declare it in the task's load()")
        if not 0 < hp.rec_fraction <= 1 or hp.rec_max < 1 or hp.iterations < 1:
            raise UserError("gi-switch: need 0 < rec_fraction <= 1, rec_max >= 1, iterations >= 1")
        self.input_shape = tuple(ctx.extras.input_shape)
        self.emulator = LocalEmulator(ctx.build_model().to(ctx.device), ctx.layout, ctx.local, ctx.extras.augment)
        self.rule = SwitchRule(hp.blend_versions, hp.switch)
        self.recovered: dict[int, Recovered] = {}
        self.pending: dict[int, tuple[int, torch.Tensor]] = {}  # client -> (target version, stale delta)
        self.inversion_seconds, self.inversions, self.final_losses = 0.0, 0, []

    # -- the emulated client ------------------------------------------------------
    def _emulate(self, base: torch.Tensor, rec: Recovered, num_samples: int) -> torch.Tensor:
        return self.emulator.delta(base, rec.x, rec.label_logits, num_samples, rec.seed)

    def _init(self, client: int, num_samples: int) -> Recovered:
        if client in self.recovered:
            return self.recovered[client]          # warm start (Sec. 4.3)
        n = min(self.hp.rec_max, max(1, round(self.hp.rec_fraction * num_samples)))
        key = np.random.SeedSequence([self.ctx.seed, client, 0x61]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(key))
        return Recovered.random(n, self.input_shape, self.ctx.num_classes, gen, self.ctx.device, self.hp.init_std)

    def estimate(self, update: ClientUpdate, seed: int) -> tuple[torch.Tensor, Recovered, list[float]]:
        """x̂_i − x_t: invert the stale update (its job replayed from ``seed``), then
        replay the client from x_t on D_rec."""
        rec, losses = invert(self.emulator, update.base, self.emulator.trainable(update.delta),
                             self._init(update.client, update.num_samples), update.num_samples, seed,
                             self.hp.iterations, self.hp.gi_lr, self.hp.signed)
        est = update.delta.clone()                 # non-trainable entries (buffers) keep the client's
        est[self.emulator.mask.to(est.device)] = self._emulate(self.params, rec, update.num_samples)
        return est, rec, losses

    # -- the server -----------------------------------------------------------------
    def _check(self, update: ClientUpdate) -> None:
        """E1/E2 against this (fresher) update of a client whose stale update was estimated."""
        target, stale = self.pending.get(update.client, (None, None))
        if target is None or update.base_version < target:
            return
        del self.pending[update.client]
        fresh = self.emulator.trainable(update.delta)
        # D_rec is replayed under the seed it was fitted with (the stale job's batch order), so
        # E1 measures the recovered data, not a change of mini-batch order
        e1 = float(relative_l1(self._emulate(update.base, self.recovered[update.client], update.num_samples), fresh))
        e2 = float(relative_l1(stale, fresh))
        self.rule.observe(e1, e2, self.version)

    def corrected_delta(self, update: ClientUpdate) -> torch.Tensor:
        """x̂_i − x_t for a stale update (blended with the stale delta after the switch),
        the raw delta otherwise; first scores this client's pending estimate against it."""
        if self.rule.switched_at is None:
            self._check(update)
        use = update.delta
        a = self.rule.alpha(self.version)
        if update.staleness >= self.hp.min_staleness and a > 0:
            t0 = time.perf_counter()
            est, rec, losses = self.estimate(update, update.job_seed)
            self.inversion_seconds += time.perf_counter() - t0
            self.inversions += 1
            self.final_losses.append(min(losses))
            self.recovered[update.client] = rec
            self.pending[update.client] = (self.version, self.emulator.trainable(update.delta))
            use = est if a == 1.0 else a * est + (1 - a) * update.delta
        return use

    def metrics(self) -> dict:
        checks = self.rule.checks
        return {
            "gi_inversions": self.inversions,
            "gi_inversion_seconds": self.inversion_seconds,
            "gi_ms_per_inversion": 1000 * self.inversion_seconds / max(self.inversions, 1),
            "gi_mean_inversion_loss": float(np.mean(self.final_losses)) if self.final_losses else None,
            "gi_switch_checks": len(checks),
            "gi_switched_at_version": self.rule.switched_at,
            "gi_last_e1": checks[-1][1] if checks else None,
            "gi_last_e2": checks[-1][2] if checks else None,
        }

    def server_state(self) -> dict:
        # tensors and plain containers only: checkpoints load with weights_only=True
        return {**super().server_state(), "pending": dict(self.pending),
                "recovered": {c: (r.x, r.label_logits, r.seed) for c, r in self.recovered.items()},
                "switched_at": self.rule.switched_at, "checks": list(self.rule.checks),
                "inversion_seconds": self.inversion_seconds, "inversions": self.inversions,
                "final_losses": list(self.final_losses)}

    def load_server_state(self, state: dict) -> None:
        super().load_server_state(state)
        self.recovered = {c: Recovered(x, y, s) for c, (x, y, s) in state["recovered"].items()}
        self.pending = dict(state["pending"])
        self.rule.switched_at, self.rule.checks = state["switched_at"], list(state["checks"])
        self.inversion_seconds, self.inversions = state["inversion_seconds"], state["inversions"]
        self.final_losses = list(state["final_losses"])
