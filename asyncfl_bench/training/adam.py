"""torch.optim.Adam's step without ``torch.optim.Optimizer``.

The first step of any ``torch.optim.Optimizer`` costs 0.6 s of a process (its
machinery loads on first use), and every step pays its Python wrapper (~0.1 ms). The
server's optimisers (FedRevive's synthesis and distillation, FedEcho's distillation,
FedGen's generator, GI-switch's inversion) take thousands of small steps per run, so
they call torch's functional ``adam`` directly, with the arguments and state
``torch.optim.Adam`` gives it. By default through torch's multi-tensor (foreach) kernel, which is what torch picks on
a GPU; on CPU, where torch picks its per-tensor loop, foreach is the same arithmetic,
bit for bit (tests/test_adam.py), and 1.7× faster on FedRevive's image generator (1.14
against 1.94 ms a step). ``fused=True`` is torch's fused kernel (one pass per tensor,
0.41 ms there; it rounds differently).
"""
from __future__ import annotations

import torch
from torch.optim.adam import adam as adam_step   # torch.optim.Adam's functional form


def adam_update(params, state: dict, *, lr: float, betas: tuple[float, float], eps: float, weight_decay: float,
                fused: bool | None, foreach: bool | None = None) -> None:
    """One Adam step (L2 weight decay, no amsgrad) on the ``params`` that have a gradient.
    ``state``: id(param) -> its step count and moments, created as torch.optim.Adam
    creates them (a float32 step on the parameter's device when fused; else on the CPU)."""
    params = [p for p in params if p.grad is not None]
    states = [state.setdefault(id(p), {}) for p in params]
    for p, s in zip(params, states):
        if not s:
            s["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if fused
                         else torch.tensor(0.0, dtype=torch.float64 if torch.get_default_dtype() == torch.float64
                                           else torch.float32))
            s["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            s["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    with torch.no_grad():
        adam_step(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                  [], [s["step"] for s in states], foreach=foreach, fused=fused, amsgrad=False, beta1=betas[0],
                  beta2=betas[1], lr=lr, weight_decay=weight_decay, eps=eps, maximize=False)


class Adam:
    """``torch.optim.Adam(params, lr, betas, eps, weight_decay)``'s steps: parameter groups
    with their own ``lr``, ``param_groups`` to change it, ``zero_grad``, ``step`` and a
    ``state_dict`` of tensors and plain data (a checkpoint loads it with weights_only)."""

    def __init__(self, params, *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, fused: bool | None = None):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**g, "params": list(g["params"]), "lr": g.get("lr", lr)} for g in groups]
        self.betas, self.eps, self.weight_decay, self.fused = tuple(betas), eps, weight_decay, fused
        self.state: dict[int, dict] = {}

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        for group in self.param_groups:
            adam_update(group["params"], self.state, lr=group["lr"], betas=self.betas, eps=self.eps,
                        weight_decay=self.weight_decay, fused=self.fused, foreach=None if self.fused else True)

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """Each group's lr and each parameter's state, in parameter order."""
        return {"lr": [g["lr"] for g in self.param_groups],
                "state": [dict(self.state.get(id(p), {})) for p in self._params()]}

    def load_state_dict(self, saved: dict) -> None:
        """What ``state_dict`` gave, for the same parameters in the same order (copied)."""
        for group, lr in zip(self.param_groups, saved["lr"]):
            group["lr"] = lr
        self.state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in zip(self._params(), saved["state"]) if s}
