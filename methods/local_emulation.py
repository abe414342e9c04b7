"""Emulating a client's local training on the server.

Two methods reason about what a client *would* have sent from another model:

* DC-ASGD reads the client's delta as one step of a pseudo-gradient,
  Δ = −η_eff·g, so it needs the step size ``effective_lr``.
* Gradient inversion (gi-switch) needs LocalUpdate(x; D) as a differentiable
  function of the data D: ``LocalEmulator`` unrolls full-batch gradient steps
  with ``torch.func.functional_call`` and ``create_graph=True``, so the result
  can be differentiated with respect to the inputs and the soft labels.

Only trainable parameters move in the emulation; float buffers (BatchNorm
statistics) are carried as constants, and deltas are compared on the
trainable entries only (as the reference code matches weights and biases).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import num_steps


def effective_lr(local: dict, num_samples: int) -> float:
    """η_eff with Δ ≈ −η_eff·ḡ for a client's whole local run: K = num_steps
    steps of size η_l, and SGD momentum μ lengthens each step to η_l/(1−μ)
    in steady state. For Adam the step is not proportional to the gradient;
    η_l·K is then only the scale."""
    lr = float(local["lr"])
    if local.get("optimizer", "sgd") == "sgd":
        lr /= 1.0 - float(local.get("momentum", 0.0))
    return lr * num_steps(num_samples, local)


def unroll_schedule(local: dict, num_samples: int, steps: int = 0) -> tuple[int, float]:
    """(steps, lr) of the emulated LocalUpdate: ``steps`` full-batch steps (0: the
    client's epochs, 1 when it runs a fixed iteration count) whose sizes add up
    to the client's effective step η_eff."""
    if steps <= 0:
        steps = 1 if local.get("iterations", 0) > 0 else max(1, int(local.get("epochs", 1)))
    return steps, effective_lr(local, num_samples) / steps


def soft_cross_entropy(logits: torch.Tensor, label_logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft labels softmax(label_logits), mean over the batch."""
    return -(label_logits.softmax(-1) * logits.log_softmax(-1)).sum(-1).mean()


class LocalEmulator:
    """LocalUpdate(x; D) = ``steps`` full-batch gradient steps of size ``lr`` from x
    on D = (inputs, soft labels), differentiable with respect to D."""

    def __init__(self, model: nn.Module, layout: Layout):
        self.model, self.layout = model, layout
        trainable = {name for name, _ in model.named_parameters()}
        self.param_names = [n for n in layout.names if n in trainable]
        self.mask = torch.cat([torch.full((k,), n in trainable, dtype=torch.bool)
                               for n, k in zip(layout.names, layout.numels)])
        self.model.train()

    def trainable(self, vec: torch.Tensor) -> torch.Tensor:
        """The trainable entries of a flat vector (the part LocalUpdate moves)."""
        return vec[self.mask.to(vec.device)]

    def delta(self, base: torch.Tensor, x: torch.Tensor, label_logits: torch.Tensor,
              steps: int, lr: float, create_graph: bool = False) -> torch.Tensor:
        """LocalUpdate(base; x, labels) − base on the trainable entries, flat."""
        state = self.layout.unflatten(base)
        params = {n: state[n].detach().clone().requires_grad_(True) for n in self.param_names}
        # clones: a BatchNorm in train mode updates its buffers in place
        buffers = {n: v.detach().clone() for n, v in state.items() if n not in params}
        start = {n: p for n, p in params.items()}
        with torch.enable_grad():
            for _ in range(steps):
                logits = functional_call(self.model, {**params, **buffers}, (x,))
                loss = soft_cross_entropy(logits, label_logits)
                grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
                params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
        out = torch.cat([(params[n] - start[n]).reshape(-1) for n in self.param_names])
        return out if create_graph else out.detach()
