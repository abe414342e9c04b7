"""Multi-teacher KL distillation on the synthetic pool (FedRevive, reference
``perform_dfkd_with_buffer``): each step draws, for every teacher k, a batch of
pool samples whose labels follow q_k (what k knows), and minimises
    Σ_k Σ_i KL(T_k(x_i) ‖ S(x_i)) / Σ_k |batch_k|
with Adam (lr 1e-4, weight decay 1e-5 in the reference), a fresh optimiser per run.

A student whose train-mode output for a sample does not depend on the rest of its
batch and draws no randomness (no BatchNorm, no dropout: ``batch_independent``) takes
one forward over all teachers' batches concatenated instead of one per teacher: the
same loss, summed in another order (equal to float rounding), at a fraction of the
cost on small models. Other students keep one forward per teacher batch, where the
batch statistics are the per-teacher batch's.
"""
from __future__ import annotations


import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.dropout import _DropoutNd

from asyncfl_bench.methods.distill.synthesis import LossGuard, SyntheticPool, default_forward, kl_per_sample
from asyncfl_bench.training.adam import Adam


def batch_independent(model: nn.Module) -> bool:
    """Whether the model's train-mode output for a sample ignores the rest of the batch and
    draws no randomness (no BatchNorm or dropout layer)."""
    return not any(isinstance(m, (_BatchNorm, _DropoutNd)) for m in model.modules())


def distill(student: nn.Module, teachers: list[nn.Module], q: torch.Tensor, pool: SyntheticPool,
            rng: torch.Generator, *, steps: int = 10, batch: int = 32, lr: float = 1e-4,
            weight_decay: float = 1e-5, temperature: float = 1.0, augment=None,
            guard: LossGuard | None = None, forward=default_forward, joint: bool | None = None) -> list[float]:
    """Train ``student`` in place; returns the loss of each step. ``joint``: one student
    forward over all teachers' batches (None: where ``batch_independent(student)``)."""
    if len(pool) == 0 or not teachers:
        return []
    joint = batch_independent(student) if joint is None else joint
    opt = Adam(student.parameters(), lr=lr, weight_decay=weight_decay)
    student.train()
    losses = []
    for _ in range(steps):
        xs, targets = [], []
        for k, t in enumerate(teachers):   # the same draws, in the same order, on either path
            x, _ = pool.sample(q[k], batch, rng)
            if augment is not None:
                x = augment(x)
            with torch.no_grad():
                targets.append(forward(t, x))
            xs.append(x)
        if joint:
            loss = kl_per_sample(forward(student, torch.cat(xs)), torch.cat(targets), temperature).sum()
        else:
            loss = sum(kl_per_sample(forward(student, x), t, temperature).sum() for x, t in zip(xs, targets))
        loss = loss / sum(len(x) for x in xs)
        if guard is not None:
            loss = guard("kd", loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    return losses


@torch.no_grad()
def mean_kl(student: nn.Module, teachers: list[nn.Module], x: torch.Tensor, forward=default_forward) -> float:
    """Mean over teachers and samples of KL(T_k ‖ S) on fixed inputs x (a diagnostic)."""
    s = forward(student, x)
    return float(torch.stack([kl_per_sample(s, forward(t, x)).mean() for t in teachers]).mean())
