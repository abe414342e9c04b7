"""Per-layer feature statistics of a classifier: which layers are tracked, their
per-channel batch statistics, and the running average a client records while it trains.

FedRevive replaces BatchNorm by "stat trackers": each client records the per-channel
mean and variance of its layers' outputs while it trains, and the server later asks
synthetic inputs to reproduce them (L_BN). The recording lives here, beside local
training, because the batched path records inside its vectorised step (``batched.py``);
the methods' side (differentiable statistics, the matching loss) is
``methods/distill/feature_stats.py``.

Tracked layers (``tracked_layers``): every convolution; else every transformer
encoder layer (text); else the linear layers except the last (the classifier).
Statistics are per channel: over every dimension but dim 1, as BatchNorm does; for
an encoder layer's (batch, token, width) output over the tokens that are not padding
(the layer's ``src_key_padding_mask``), as the reference's text trackers average
over active tokens.
"""
from __future__ import annotations

import torch
from torch import nn

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SEQUENCE = (nn.TransformerEncoderLayer,)


def tracked_layers(model: nn.Module, kinds: tuple[type, ...] = CONV) -> list[nn.Module]:
    layers = [m for m in model.modules() if isinstance(m, kinds)]
    if not layers:  # a transformer: its encoder layers
        layers = [m for m in model.modules() if isinstance(m, SEQUENCE)]
    if not layers:  # an MLP: its hidden linear layers
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        layers = linears[:-1]
    return layers


def batch_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of a batch of activations.

    The variance is mean((x − mean)²), two plain passes: the same value as
    ``x.var(unbiased=False)`` up to float rounding (a test holds them equal in float64),
    with forward and backward 2.3× faster on CPU than torch's variance kernel (32×32×8×8
    activations, one thread), which made 7 % of a digits ci FedRevive run."""
    dims = [d for d in range(x.dim()) if d != 1]
    shape = [1] * x.dim()
    shape[1] = -1
    mean = x.mean(dim=dims)
    return mean, (x - mean.view(shape)).square().mean(dim=dims)


def stacked_batch_stats(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_stats`` of each job's batch in a stack x of shape (jobs, samples, channels,
    ...): (jobs, channels) means and variances. ``mask`` (jobs, samples): the statistics of
    each job's real samples only (a padded short batch); None: all samples are real.
    Computed on the stack directly: inside vmap the same reductions run 2× slower."""
    dims = [1] + list(range(3, x.dim()))
    shape = list(x.shape[:1]) + [1, -1] + [1] * (x.dim() - 3)
    if mask is None:
        mean = x.mean(dim=dims)
        return mean, (x - mean.view(shape)).square().mean(dim=dims)
    w = mask.to(x.dtype).view(list(mask.shape) + [1] * (x.dim() - 2))
    count = w.sum(dim=1).view(-1, 1) * x[0, 0, 0].numel()      # real samples × positions
    mean = (x * w).sum(dim=dims) / count
    return mean, ((x - mean.view(shape)).square() * w).sum(dim=dims) / count


def layer_stats(module: nn.Module, kwargs: dict, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A tracked layer's statistics; an encoder layer's over its non-padding tokens."""
    if isinstance(module, SEQUENCE):
        pad = kwargs.get("src_key_padding_mask")
        if pad is None:
            return batch_stats(output.reshape(-1, output.shape[-1]))
        pad = pad if pad.dtype == torch.bool else pad != 0     # a float mask holds −inf at padding
        return batch_stats(output[~pad])
    return batch_stats(output)


def fold_running_stats(record: dict, stats: list, momentum: float) -> None:
    """Fold one step's [(mean, var), ...] into ``record["stats"]``: an exponential average
    with ``momentum`` as in FedRevive's trackers, started at the first step (no bias
    toward an initial value); ``record["steps"]`` counts the steps."""
    if not record.get("stats"):
        record["stats"] = [(m.clone(), v.clone()) for m, v in stats]
    else:
        record["stats"] = [(rm.lerp(m, momentum), rv.lerp(v, momentum))
                           for (rm, rv), (m, v) in zip(record["stats"], stats)]
    record["steps"] = record.get("steps", 0) + 1
