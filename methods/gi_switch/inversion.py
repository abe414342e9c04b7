"""Recover a data set D_rec from a client's update by gradient inversion.

Wang & Gao, "Tackling the Unlimited Staleness in Federated Learning with
Intertwined Data and Device Heterogeneities" (arXiv:2309.13536), the inversion step:

    D_rec = argmin_D  L1( LocalUpdate(x_{t−τ}; D) − x_{t−τ},  Δ_i )

with LocalUpdate the client's own program replayed on D (``LocalEmulator``).
D_rec holds free inputs and free label logits (soft labels = their softmax).

Optimiser, as in the reference code (``inversefed`` FedAvgReconstructor with
``cost_fn='l1'``, ``signed=True``, ``optim='adam'``, ``lr_decay=True``): Adam on
the inputs and the label logits; the inputs' gradient is replaced by its sign;
the learning rate drops ×0.1 at 3/8, 5/8 and 7/8 of the budget. Choices the
paper leaves open, made here:

* the cost is the L1 distance *relative* to ‖Δ_i‖₁, so a loss threshold means
  the same thing for every update (Adam is insensitive to the scale anyway);
* no box constraint on the inputs: the server does not know the data's range;
* ``tol`` stops early once the loss reaches it (used to count iterations).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from asyncfl_bench.methods.gi_switch.emulation import LocalEmulator


@dataclass
class Recovered:
    """D_rec: inputs, the logits of its soft labels, and the job seed whose batch
    order the inputs were fitted under."""

    x: torch.Tensor
    label_logits: torch.Tensor
    seed: int = 0

    @classmethod
    def random(cls, n: int, input_shape: tuple, num_classes: int, generator: torch.Generator,
               device=None, std: float = 1.0) -> "Recovered":
        x = (std * torch.randn((n, *input_shape), generator=generator)).to(device)
        y = torch.randn((n, num_classes), generator=generator).to(device)
        return cls(x, y)

    def clone(self) -> "Recovered":
        return Recovered(self.x.detach().clone(), self.label_logits.detach().clone(), self.seed)


def relative_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a − b‖₁ / ‖b‖₁: the disparity of ``a`` from the reference ``b``."""
    return (a - b).abs().sum() / b.abs().sum().clamp_min(1e-12)


def invert(emulator: LocalEmulator, base: torch.Tensor, target: torch.Tensor, init: Recovered,
           num_samples: int, seed: int, iterations: int, lr: float, signed: bool = True,
           tol: float | None = None) -> tuple[Recovered, list[float]]:
    """Fit D_rec so that the emulated update from ``base`` matches ``target``
    (a client's delta on the trainable entries). Starts from ``init`` (random
    for a cold start, the client's previous D_rec for a warm start). Returns
    the best D_rec seen and the loss of every iteration."""
    x = init.x.detach().clone().requires_grad_(True)
    y = init.label_logits.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x, y], lr=lr)
    miles = [int(iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=miles, gamma=0.1)
    target = target.detach()
    losses: list[float] = []
    best, best_loss = Recovered(x.detach().clone(), y.detach().clone(), seed), float("inf")
    for _ in range(iterations):
        opt.zero_grad(set_to_none=True)
        est = emulator.delta(base, x, y, num_samples, seed, create_graph=True)
        loss = relative_l1(est, target)
        loss.backward()
        value = float(loss.detach())
        losses.append(value)
        if value < best_loss:   # the data that produced this loss, before the step moves it
            best, best_loss = Recovered(x.detach().clone(), y.detach().clone(), seed), value
        if tol is not None and value <= tol:
            break
        if signed:
            x.grad.sign_()
        opt.step()
        sched.step()
    return best, losses
