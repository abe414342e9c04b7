"""Client local training and evaluation.

A client's update depends only on (base parameters, its data, its job seed,
its payload): the trainer keeps one scratch module, loads the base vector into
it, trains, and reads the result back out.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.sgd import sgd as sgd_step   # torch.optim.SGD's functional form

from asyncfl_bench.errors import UserError
from asyncfl_bench.training.adam import adam_update
from asyncfl_bench.training.flat import Layout

LOCAL_DEFAULTS = {
    "optimizer": "sgd",   # sgd | adam
    "lr": 0.05,
    "momentum": 0.0,
    "weight_decay": 0.0,
    "batch_size": 32,
    "epochs": 1,          # used when iterations == 0
    "iterations": 0,      # > 0: a fixed number of mini-batch steps instead of epochs
}


def job_seed(seed: int, client: int, k: int) -> int:
    """Seed of the k-th job of ``client``: the same in every method's run."""
    return int(np.random.SeedSequence([seed, client, k, 0x10CA1]).generate_state(1)[0])


def num_steps(n: int, local: dict) -> int:
    if local["iterations"] > 0:
        return int(local["iterations"])
    return max(1, int(local["epochs"] * math.ceil(n / local["batch_size"])))


def effective_lr(local: dict, num_samples: int) -> float:
    """η_eff with Δ ≈ −η_eff·ḡ for a client's whole local run: K = num_steps
    steps of size η_l, and SGD momentum μ lengthens each step to η_l/(1−μ)
    in steady state. For Adam the step is not proportional to the gradient;
    η_l·K is then only the scale (DC-ASGD's pseudo-gradient step)."""
    local = {**LOCAL_DEFAULTS, **local}
    lr = float(local["lr"])
    if local["optimizer"] == "sgd":
        lr /= 1.0 - float(local["momentum"])
    return lr * num_steps(num_samples, local)


# torch.optim.Adam's defaults, kept by every local Adam step (sequential and batched)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


class LocalOptimizer:
    """A client's optimiser: torch.optim's SGD and Adam steps through their functional
    forms (``torch.optim.sgd.sgd``, ``torch.optim.adam.adam``), given the arguments and
    state ``torch.optim.SGD``/``Adam`` give them: the same kernels, bit for bit
    (tests/test_training.py). A ``torch.optim.Optimizer`` imports ``torch._dynamo`` on its
    first use, 0.6 s of a run's start-up.

    SGD: foreach, one multi-tensor kernel per update op instead of one per parameter, the
    same arithmetic (bit-identical, tests/test_training.py). Adam: fused, the whole update
    in one pass per tensor: its step is 2.6× faster than foreach's on the femnist ci CNN,
    a job 1.07× faster (foreach was already 1.6× torch's CPU default). It rounds differently
    from the multi-pass formula: equal in float64 (1e-15), and in float32 by ~1e-6 of a
    job's update, which Adam's 1/√v amplifies (tests/test_training.py). torch picks
    neither on CPU. ``foreach = fused = False``: torch's per-tensor loops.
    """

    def __init__(self, params, local: dict):
        if local["optimizer"] not in ("sgd", "adam"):
            raise UserError(f"unknown local optimizer '{local['optimizer']}'; valid: sgd, adam")
        self.params, self.local = list(params), local
        self.foreach, self.fused = local["optimizer"] == "sgd", local["optimizer"] == "adam"
        self.state: dict[int, dict] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        local = self.local
        if local["optimizer"] == "adam":
            adam_update(self.params, self.state, lr=local["lr"], betas=ADAM_BETAS, eps=ADAM_EPS,
                        weight_decay=local["weight_decay"], fused=self.fused, foreach=None if self.fused else False)
            return
        params = [p for p in self.params if p.grad is not None]
        states = [self.state.setdefault(id(p), {}) for p in params]
        buffers = [s.get("momentum_buffer") for s in states]   # None at first: SGD copies the gradient
        sgd_step(params, [p.grad for p in params], buffers, foreach=self.foreach, weight_decay=local["weight_decay"],
                 momentum=local["momentum"], lr=local["lr"], dampening=0.0, nesterov=False, maximize=False)
        if local["momentum"]:
            for s, b in zip(states, buffers):
                s["momentum_buffer"] = b


def make_optimizer(params, local: dict) -> LocalOptimizer:
    return LocalOptimizer(params, local)


def batch_order(n: int, steps: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """Mini-batch index tensors: epochs of fresh permutations, cut into batches."""
    bs = min(batch_size, n)
    per_epoch = math.ceil(n / bs)
    perms = [torch.randperm(n, generator=generator, device=device) for _ in range(math.ceil(steps / per_epoch))]
    batches = [p[i:i + bs] for p in perms for i in range(0, n, bs)]
    return batches[:steps]


class LocalTrainer:
    def __init__(self, build_model, layout: Layout, local: dict, device: torch.device, augment=None):
        self.model = build_model().to(device)
        self.layout, self.local, self.device = layout, local, device
        self.augment = augment   # optional batch transform (xb, generator) -> xb, e.g. crop + flip

    def train(self, base: torch.Tensor, x: torch.Tensor, y: torch.Tensor, seed: int,
              regularizer=None) -> tuple[torch.Tensor, float]:
        """Train from ``base`` on (x, y); returns the new flat parameters and the mean loss."""
        model = self.model
        self.layout.load(model, base)
        model.train()
        opt = make_optimizer(model.parameters(), self.local)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        total = torch.zeros((), device=self.device)
        batches = batch_order(len(y), num_steps(len(y), self.local), self.local["batch_size"], gen, self.device)
        for idx in batches:
            xb, yb = x[idx], y[idx]
            if self.augment is not None:
                xb = self.augment(xb, gen)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if regularizer is not None:
                loss = loss + regularizer(model, xb, yb, logits)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
        return self.layout.flatten(model), float(total) / len(batches)


@torch.no_grad()
def evaluate(model: nn.Module, layout: Layout, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
             num_classes: int, batch_size: int = 1024) -> dict:
    """Accuracy, mean loss and per-class accuracy of ``params`` on (x, y)."""
    layout.load(model, params)
    model.eval()
    correct = torch.zeros(num_classes, device=y.device)
    loss = torch.zeros((), device=y.device)
    for i in range(0, len(y), batch_size):
        logits = model(x[i:i + batch_size])
        yb = y[i:i + batch_size]
        loss += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += torch.bincount(yb[logits.argmax(1) == yb], minlength=num_classes)
    count = torch.bincount(y, minlength=num_classes).clamp_min(1)
    return {"accuracy": float(correct.sum() / len(y)), "loss": float(loss / len(y)),
            "class_accuracy": (correct / count).cpu().numpy()}
