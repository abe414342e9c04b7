"""Recover a data set D_rec from a client's update by gradient inversion.

Wang & Gao, "Tackling the Unlimited Staleness in Federated Learning with
Intertwined Data and Device Heterogeneities" (arXiv:2309.13536), Sec. 4.1, Eq. (4):

    D_rec = argmin_D  L1( LocalUpdate(x_{t−τ}; D) − x_{t−τ},  Δ_i )

with LocalUpdate the client's own program replayed on D (``LocalEmulator``).
D_rec holds free inputs and free labels: by default the authors' free real-valued
targets (``label_model="free"``), or soft labels softmax(y) (``"soft-ce"``); see
``emulation.LABEL_MODELS``.

Optimiser (``InversionSettings``), as in the paper's Table 1 and the reference code
(inversefed ``FedAvgReconstructor`` with ``cost_fn='l1'``, ``signed=True``,
``optim='adam'``, ``lr=1``, ``boxed=True``, ``lr_decay=True``): Adam on the inputs
and the labels; the inputs' gradient replaced by its sign; the learning rate
×0.1 at 3/8, 5/8 and 7/8 of the budget; after every step the inputs are clamped
to the box. Choices the paper leaves open, made here:

* the cost is the L1 distance *relative* to ‖Δ_i‖₁ (the reference sums the
  absolute differences): the same minimiser, and a loss threshold means the same
  thing for every update;
* the best D_rec seen is returned (the reference returns the last; with the
  decayed rate the two differ little);
* ``tol`` stops early once the loss reaches it (used to count iterations).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.gi_switch.emulation import LABEL_MODELS, LocalEmulator
from asyncfl_bench.training.adam import Adam


@dataclass(frozen=True)
class InversionSettings:
    """The inversion's optimiser and label model (defaults: the paper's Table 1)."""

    iterations: int = 15_000                        # Table 1: 15k (the code runs 10k–40k)
    lr: float = 1.0                                 # Table 1 / code: Adam lr 1
    signed: bool = True                             # code: signed=True, sign of the inputs' gradient
    box: tuple[float, float] | None = (-2.0, 2.0)   # Table 1 / code: inputs clamped to [−2, 2]
    label_model: str = "free"                       # code: free targets through BCEWithLogits(log_softmax)

    def __post_init__(self):
        if self.iterations < 1 or not self.lr > 0:
            raise UserError(f"inversion needs iterations >= 1 and lr > 0, got {self.iterations}, {self.lr}")
        if self.label_model not in LABEL_MODELS:
            raise UserError(f"unknown label model '{self.label_model}'; valid: {', '.join(LABEL_MODELS)}")
        if self.box is not None and not self.box[0] < self.box[1]:
            raise UserError(f"the input box needs low < high, got {self.box}")


@dataclass
class Recovered:
    """D_rec: inputs, their labels (free targets or soft-label logits, per the label
    model), and the job seed whose batch order the inputs were fitted under."""

    x: torch.Tensor
    labels: torch.Tensor
    seed: int = 0

    @classmethod
    def random(cls, n: int, input_shape: tuple, num_classes: int, generator: torch.Generator,
               device=None, std: float = 1.0, box: tuple[float, float] | None = None) -> Recovered:
        """A cold start: inputs std·N(0, 1) (the code's init='randn'), clamped to the box;
        labels N(0, 1) of shape (n, C) (the code's ``torch.randn(output.shape)``)."""
        x = std * torch.randn((n, *input_shape), generator=generator)
        if box is not None:
            x = x.clamp(*box)
        y = torch.randn((n, num_classes), generator=generator)
        return cls(x.to(device), y.to(device))

    def clone(self) -> Recovered:
        return Recovered(self.x.detach().clone(), self.labels.detach().clone(), self.seed)


def relative_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖₁ / ‖b‖₁: the disparity of ``a`` from the reference ``b``."""
    return (a - b).abs().sum() / b.abs().sum().clamp_min(1e-12)


def invert(emulator: LocalEmulator, base: torch.Tensor, target: torch.Tensor, init: Recovered,
           num_samples: int, seed: int, settings: InversionSettings,
           tol: float | None = None) -> tuple[Recovered, list[float]]:
    """Fit D_rec so that the client's program replayed from ``base`` (a client of
    ``num_samples`` samples, job seed ``seed``) matches ``target``, the client's delta
    on the trainable entries. Starts from ``init`` (random for a cold start, the
    client's previous D_rec for a warm start). Returns the best D_rec seen, tagged
    with ``seed``, and the loss of every iteration."""
    s = settings
    x = init.x.detach().clone().requires_grad_(True)
    y = init.labels.detach().clone().requires_grad_(True)
    opt = Adam([x, y], lr=s.lr)
    # torch's MultiStepLR(milestones, gamma=0.1), made before the loop and stepped after
    # each iteration: at count i (0 when made), lr ← lr · 0.1^(times i is a milestone)
    miles = Counter(int(s.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8))

    def decay(count: int) -> None:
        if count in miles:
            opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"] * 0.1 ** miles[count]
    decay(0)
    target = target.detach()
    losses: list[float] = []
    best, best_loss = Recovered(x.detach().clone(), y.detach().clone(), seed), float("inf")
    for iteration in range(1, s.iterations + 1):
        opt.zero_grad()
        est = emulator.delta(base, x, y, num_samples, seed, create_graph=True, label_model=s.label_model)
        loss = relative_l1(est, target)
        loss.backward()
        value = float(loss.detach())
        losses.append(value)
        if value < best_loss:   # the data that produced this loss, before the step moves it
            best, best_loss = Recovered(x.detach().clone(), y.detach().clone(), seed), value
        if tol is not None and value <= tol:
            break
        if s.signed:
            x.grad.sign_()
        opt.step()
        decay(iteration)
        if s.box is not None:
            with torch.no_grad():
                x.clamp_(*s.box)
    return best, losses
