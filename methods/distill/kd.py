"""Multi-teacher KL distillation on the synthetic pool (FedRevive, reference
``perform_dfkd_with_buffer``): each step draws, for every teacher k, a batch of
pool samples whose labels follow q_k (what k knows), and minimises
    Σ_k Σ_i KL(T_k(x_i) ‖ S(x_i)) / Σ_k |batch_k|
with Adam (lr 1e-4, weight decay 1e-5 in the reference), a fresh optimiser per run.
"""
from __future__ import annotations


import torch
from torch import nn

from asyncfl_bench.methods.distill.synthesis import LossGuard, SyntheticPool, default_forward, kl_per_sample


def distill(student: nn.Module, teachers: list[nn.Module], q: torch.Tensor, pool: SyntheticPool,
            rng: torch.Generator, *, steps: int = 10, batch: int = 32, lr: float = 1e-4,
            weight_decay: float = 1e-5, temperature: float = 1.0, augment=None,
            guard: LossGuard | None = None, forward=default_forward) -> list[float]:
    """Train ``student`` in place; returns the loss of each step."""
    if len(pool) == 0 or not teachers:
        return []
    opt = torch.optim.Adam(student.parameters(), lr=lr, weight_decay=weight_decay)
    student.train()
    losses = []
    for _ in range(steps):
        loss, n = None, 0
        for k, t in enumerate(teachers):
            x, _ = pool.sample(q[k], batch, rng)
            if augment is not None:
                x = augment(x)
            with torch.no_grad():
                t_logits = forward(t, x)
            term = kl_per_sample(forward(student, x), t_logits, temperature).sum()
            loss = term if loss is None else loss + term
            n += len(x)
        loss = loss / n
        if guard is not None:
            loss = guard("kd", loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach().item())
    return losses


@torch.no_grad()
def mean_kl(student: nn.Module, teachers: list[nn.Module], x: torch.Tensor, forward=default_forward) -> float:
    """Mean over teachers and samples of KL(T_k ‖ S) on fixed inputs x (a diagnostic)."""
    s = forward(student, x)
    return float(torch.stack([kl_per_sample(s, forward(t, x)).mean() for t in teachers]).mean())
