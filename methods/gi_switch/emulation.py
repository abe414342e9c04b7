"""Emulating a client's local training on the server.

Two methods reason about what a client *would* have sent from another model:

* DC-ASGD reads the client's delta as one step of a pseudo-gradient,
  Δ = −η_eff·g, so it needs the step size ``effective_lr``.
* Gradient inversion (gi-switch; Wang & Gao, arXiv:2309.13536, Sec. 4) needs
  LocalUpdate(x; D) as a differentiable function of the data D. ``LocalEmulator``
  replays the client's own program (``asyncfl_bench.training.local``): the same
  optimiser (SGD with momentum and weight decay, or Adam), the same step count
  ``num_steps``, the same mini-batch schedule ``batch_order`` drawn from the job's
  seed, the same augmentation draws from that generator, and the client's loss
  (cross-entropy on integer labels; recovered labels enter as ``LABEL_MODELS`` says).
  Given a client's own data and job seed it reproduces the client's update to float
  rounding (tests/test_gi_emulation.py).

What the replay cannot reproduce when D_rec is smaller than D_i (the paper's
|D_rec| ≈ ½|D_i|): the step count and the optimiser's state evolve exactly as the
client's, and each batch holds the same share of the set (``ClientProgram.batch_size_for``),
but which samples share a batch is the replay's own draw over |D_rec| indices, and
the last, partial batch of an epoch can differ in size by a sample or two. A
full-batch client (batch ≥ |D_i|) is replayed exactly in structure: every step sees
all of D_rec.

The optimiser is replayed by ``ReplayedOptimizer``, an out-of-place copy of
``torch.optim.SGD``/``Adam``'s single-tensor arithmetic: torch's own optimisers step
parameters in place, and their ``differentiable=True`` mode keeps only the last step's
graph through a multi-step unroll (checked with ``gradcheck``: the earlier steps'
data get a zero gradient), so they cannot be unrolled here.

Only trainable parameters move in the emulation; float buffers (BatchNorm
statistics) are carried as constants, and deltas are compared on the trainable
entries only (as the reference code matches weights and biases).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from asyncfl_bench.errors import UserError
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import LOCAL_DEFAULTS, batch_order, num_steps

# How a recovered sample's label enters the emulated loss (integer labels, a client's own
# data, always use the client's own cross-entropy):
# * free:    free real-valued targets y ∈ R^C, loss BCEWithLogits(log_softmax(z), y): the
#            authors' code (inversefed ``loss_steps`` with 2-D labels on models that end in
#            log_softmax; the targets start as randn (n, C) in ``_run_trial``);
# * soft-ce: soft labels softmax(y), loss −Σ softmax(y)·log_softmax(z) (DLG's label recovery).
LABEL_MODELS = ("free", "soft-ce")


def soft_cross_entropy(logits: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft labels softmax(label_logits), mean over the batch."""
    return -(label_logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()


def label_loss(logits: torch.Tensor, labels: torch.Tensor, label_model: str = "free") -> torch.Tensor:
    """The emulated client's loss on one batch: its own cross-entropy on integer labels
    (training/local.py); on recovered float labels, the ``label_model``'s (``LABEL_MODELS``)."""
    if not labels.is_floating_point():
        return F.cross_entropy(logits, labels)
    if label_model == "free":
        return F.binary_cross_entropy_with_logits(logits.log_softmax(-1), labels)
    if label_model == "soft-ce":
        return soft_cross_entropy(logits, labels)
    raise UserError(f"unknown label model '{label_model}'; valid: {', '.join(LABEL_MODELS)}")


@dataclass(frozen=True)
class ClientProgram:
    """One client's LocalUpdate as ``training.local`` runs it, from the task's ``local``
    settings and the client's sample count n."""

    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    steps: int
    num_samples: int

    @classmethod
    def of(cls, local: dict, num_samples: int) -> ClientProgram:
        local = {**LOCAL_DEFAULTS, **local}
        if local["optimizer"] not in ("sgd", "adam"):
            raise UserError(f"unknown local optimizer '{local['optimizer']}'; valid: sgd, adam")
        return cls(local["optimizer"], float(local["lr"]), float(local["momentum"]),
                   float(local["weight_decay"]), int(local["batch_size"]),
                   num_steps(num_samples, local), int(num_samples))

    def batch_size_for(self, m: int) -> int:
        """The batch size that gives a set of m samples the client's share per step
        (bs/n); the client's own batch size when m = n."""
        if m == self.num_samples:
            return self.batch_size
        return max(1, min(m, round(self.batch_size * m / self.num_samples)))

    def batches(self, m: int, generator: torch.Generator, device) -> list[torch.Tensor]:
        """The index batches of a replay on m samples: ``training.local.batch_order``."""
        return batch_order(m, self.steps, self.batch_size_for(m), generator, device)


def _sqrt_zero_safe(v: torch.Tensor) -> torch.Tensor:
    """√v with a zero (not infinite) derivative where v = 0: Adam's second moment is
    exactly 0 for parameters whose gradient is exactly 0 (dead ReLU units)."""
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))


class ReplayedOptimizer:
    """``torch.optim.SGD`` (momentum, dampening 0, weight decay) and ``torch.optim.Adam``
    (β = (0.9, 0.999), ε = 1e-8, weight decay, no amsgrad), as ``make_optimizer``
    configures them, written out of place so an unroll stays differentiable."""

    BETAS, EPS = (0.9, 0.999), 1e-8   # torch.optim.Adam's defaults, which make_optimizer keeps

    def __init__(self, program: ClientProgram):
        self.p = program
        self.t = 0
        self.first: list[torch.Tensor] | None = None    # SGD momentum buffer / Adam m
        self.second: list[torch.Tensor] | None = None   # Adam v

    def step(self, params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
        p = self.p
        self.t += 1
        if p.weight_decay:
            grads = [g + p.weight_decay * w for g, w in zip(grads, params)]
        if p.optimizer == "sgd":
            if p.momentum:
                self.first = list(grads) if self.first is None else \
                    [p.momentum * b + g for b, g in zip(self.first, grads)]
                grads = self.first
            return [w - p.lr * g for w, g in zip(params, grads)]
        b1, b2 = self.BETAS
        if self.first is None:
            self.first = [torch.zeros_like(g) for g in grads]
            self.second = [torch.zeros_like(g) for g in grads]
        self.first = [m + (1 - b1) * (g - m) for m, g in zip(self.first, grads)]        # m.lerp_(g, 1 − β1)
        self.second = [b2 * v + (1 - b2) * g * g for v, g in zip(self.second, grads)]
        step_size = p.lr / (1 - b1 ** self.t)
        root = math.sqrt(1 - b2 ** self.t)
        return [w - step_size * m / (_sqrt_zero_safe(v) / root + self.EPS)
                for w, m, v in zip(params, self.first, self.second)]


class LocalEmulator:
    """LocalUpdate(x; D) − x: the client's program replayed on D = (inputs, labels),
    differentiable with respect to D (``create_graph=True``)."""

    def __init__(self, model: nn.Module, layout: Layout, local: dict, augment=None):
        self.model, self.layout, self.local, self.augment = model, layout, dict(local), augment
        trainable = {name for name, _ in model.named_parameters()}
        self.param_names = [n for n in layout.names if n in trainable]
        self.mask = torch.cat([torch.full((k,), n in trainable, dtype=torch.bool)
                               for n, k in zip(layout.names, layout.numels)])
        self.model.train()   # the client trains in train mode (BatchNorm on batch statistics)

    def trainable(self, vec: torch.Tensor) -> torch.Tensor:
        """The trainable entries of a flat vector (the part LocalUpdate moves)."""
        return vec[self.mask.to(vec.device)]

    def program(self, num_samples: int) -> ClientProgram:
        return ClientProgram.of(self.local, num_samples)

    def delta(self, base: torch.Tensor, x: torch.Tensor, labels: torch.Tensor, num_samples: int,
              seed: int, create_graph: bool = False, label_model: str = "free") -> torch.Tensor:
        """LocalUpdate(base; x, labels) − base on the trainable entries, flat, for a client
        holding ``num_samples`` samples, its batches drawn from the job seed ``seed``.
        Float ``labels`` (recovered ones) enter the loss as ``label_model`` says."""
        program = self.program(num_samples)
        state = self.layout.unflatten(base)
        names = self.param_names
        params = [state[n].detach().clone().requires_grad_(True) for n in names]
        start = [p.detach() for p in params]
        # clones: a BatchNorm in train mode updates its buffers in place
        buffers = {n: v.detach().clone() for n, v in state.items() if n not in set(names)}
        gen = torch.Generator(device=x.device).manual_seed(int(seed))
        opt = ReplayedOptimizer(program)
        with torch.enable_grad():
            for idx in program.batches(len(x), gen, x.device):
                xb, yb = x[idx], labels[idx]
                if self.augment is not None:
                    xb = self.augment(xb, gen)
                logits = functional_call(self.model, {**dict(zip(names, params)), **buffers}, (xb,))
                grads = torch.autograd.grad(label_loss(logits, yb, label_model), params,
                                            create_graph=create_graph)
                params = opt.step(params, grads)
                if not create_graph:   # keep one step's graph, not the whole unroll's
                    params = [p.detach().requires_grad_(True) for p in params]
                    opt.first = None if opt.first is None else [b.detach() for b in opt.first]
                    opt.second = None if opt.second is None else [v.detach() for v in opt.second]
        out = torch.cat([(p - s).reshape(-1) for p, s in zip(params, start)])
        return out if create_graph else out.detach()
