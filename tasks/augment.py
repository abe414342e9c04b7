"""Batched image augmentation on the run's device: random crop with zero padding and
horizontal flip (the standard CIFAR recipe), as tensor ops on a whole mini-batch
rather than per-sample PIL transforms. Draws come from the job's generator, so a
client's update stays a function of its job seed."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Each image of ``x`` [B, C, H, W] shifted by a random offset in [−pad, pad]² (zeros
    fill the border) and mirrored left-right with probability ½."""
    b, _, h, w = x.shape
    dev = x.device
    off = torch.randint(0, 2 * pad + 1, (2, b), generator=generator, device=dev)
    mirror = torch.rand(b, generator=generator, device=dev) < 0.5
    xp = F.pad(x, (pad, pad, pad, pad))
    rows = (off[0, :, None] + torch.arange(h, device=dev))[:, None, :, None]        # [B,1,H,1]
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip:
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    cols = (off[1, :, None] + cols)[:, None, None, :]                                # [B,1,1,W]
    chan = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    return xp[torch.arange(b, device=dev)[:, None, None, None], chan, rows, cols]


class CropFlip:
    """``TaskExtras.augment`` for the local trainer: ``augment(xb, generator) -> xb``."""

    def __init__(self, pad: int = 4, flip: bool = True):
        self.pad, self.flip = pad, flip

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return crop_flip(x, generator, self.pad, self.flip)
