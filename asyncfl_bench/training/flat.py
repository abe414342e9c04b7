"""A model's state as one flat float vector, so aggregation is vector arithmetic.

The vector holds every floating-point entry of ``state_dict()`` (parameters and
float buffers such as BatchNorm running statistics), in a fixed order. Integer
buffers (``num_batches_tracked``) stay in the module and are not aggregated.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Layout:
    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    numels: tuple[int, ...]

    @classmethod
    def of(cls, module: nn.Module) -> "Layout":
        items = [(k, v) for k, v in module.state_dict().items() if v.is_floating_point()]
        return cls(tuple(k for k, _ in items), tuple(v.shape for _, v in items),
                   tuple(v.numel() for _, v in items))

    @property
    def size(self) -> int:
        return sum(self.numels)

    def flatten(self, module: nn.Module) -> torch.Tensor:
        state = module.state_dict()
        return torch.cat([state[k].detach().reshape(-1) for k in self.names])

    def load(self, module: nn.Module, vec: torch.Tensor) -> None:
        """Copy ``vec`` into the module's tensors in place (no new allocations)."""
        state = module.state_dict()
        with torch.no_grad():
            for k, chunk in zip(self.names, torch.split(vec, self.numels)):
                state[k].copy_(chunk.view_as(state[k]))

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: c.view(s) for k, c, s in zip(self.names, torch.split(vec, self.numels), self.shapes)}
