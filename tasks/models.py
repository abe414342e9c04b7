"""Models shared by tasks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from asyncfl_bench.errors import UserError


def channels_last(module: nn.Module) -> nn.Module:
    """Store ``module``'s convolution weights channels-last: oneDNN then trains the FEMNIST
    paper CNN 1.4× and the CIFAR ResNet-18 1.16× faster per step on CPU (batch 32, 2
    threads); the small ci CNNs gain nothing and keep the default. Values are unchanged:
    Layout reads and writes them in logical order, ``.to(device)`` keeps the format, and
    only the order of float sums inside the kernels differs."""
    return module.to(memory_format=torch.channels_last)


class _MaxPoolChannelsLast(torch.autograd.Function):
    """Max pooling computed on a channels-last copy, differentiated on the original layout.

    torch's CPU max-pool forward on a contiguous (N, C, H, W) tensor runs 15× slower than
    on the same values channels-last (0.68 ms against 0.04 ms for 80×32×8×8, one
    thread), while its backward is fast in both. The maxima and their indices are the
    same either way, so the output, the gradient and the gradient's own gradient are
    bit for bit those of ``F.max_pool2d`` (tests/test_models.py)."""

    @staticmethod
    def forward(x, kernel, stride):
        out, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last),
                                                          kernel, stride)
        return out.contiguous(), idx.contiguous()

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, ctx.kernel, ctx.stride = inputs
        ctx.save_for_backward(x, output[1])
        ctx.mark_non_differentiable(output[1])

    @staticmethod
    def backward(ctx, grad, _):
        x, idx = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(grad.contiguous(), x, ctx.kernel, ctx.stride,
                                                               [0, 0], [1, 1], False, idx), None, None

    @staticmethod
    def vmap(info, in_dims, x, kernel, stride):
        """Under vmap (batched clients), fold the job dimension into the batch."""
        if in_dims[0] is None:
            return _MaxPoolChannelsLast.apply(x, kernel, stride), (None, None)
        x = x.movedim(in_dims[0], 0)
        out, idx = _MaxPoolChannelsLast.apply(x.flatten(0, 1), kernel, stride)
        return (out.unflatten(0, x.shape[:2]), idx.unflatten(0, x.shape[:2])), (0, 0)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (no padding or dilation) that pools a large contiguous NCHW input
    through :class:`_MaxPoolChannelsLast`: the same numbers, faster on CPU (a digits ci
    FedRevive run 3 % faster: the server's synthesis and distillation batches). Small
    inputs (under 32×32×8×8 values: the copy costs more than it saves) and other layouts
    (also most stacked inputs under vmap, which are not contiguous) take torch's path."""

    LARGE = 32 * 32 * 8 * 8

    def forward(self, x):
        if (x.dim() == 4 and x.numel() >= self.LARGE and x.device.type == "cpu" and x.is_contiguous()
                and not self.ceil_mode and self.padding == 0 and self.dilation == 1 and not self.return_indices):
            k = list(nn.modules.utils._pair(self.kernel_size))
            s = list(nn.modules.utils._pair(self.stride or self.kernel_size))
            return _MaxPoolChannelsLast.apply(x, k, s)[0]
        return super().forward(x)


class SmallCNN(nn.Module):
    """Two 3×3 convolutions, max-pool, two linear layers: the ``ci`` model for
    small greyscale images (8×8 digits, 28×28 FEMNIST)."""

    def __init__(self, in_channels: int, side: int, num_classes: int, width: int = 16, hidden: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            MaxPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(2 * width * (side // 2) ** 2, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.net(x)


class Standardize(nn.Module):
    """Input scaling inside the model: uint8 images (kept that way on the device, 4×
    smaller) become floats in [0, 1]; then (x − mean) / std per channel. Float inputs
    (e.g. a generator's sigmoid output) are taken as already in [0, 1]."""

    def __init__(self, mean, std):
        super().__init__()
        # non-persistent: constants, not aggregated state (Layout reads state_dict())
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        return (x - self.mean) / self.std


class FemnistCNN(nn.Module):
    """The FEMNIST CNN of FedRevive's code: three 3×3 convolutions of 64 channels and
    FC 1600 → 200 → 100 → 62. The card fixes widths only; 1600 = 64·5·5 comes from
    28 → conv(pad 1) → pool 14 → conv(pad 1) → pool 7 → conv(no pad) 5."""

    def __init__(self, num_classes: int = 62, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            Standardize([0.0] * in_channels, [1.0] * in_channels),
            nn.Conv2d(in_channels, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(1600, 200), nn.ReLU(), nn.Linear(200, 100), nn.ReLU(),
                                  nn.Linear(100, num_classes))
        channels_last(self)

    def forward(self, x):
        return self.head(self.features(x))


class ImageCNN(nn.Module):
    """The ``ci`` model for uint8 images: two stride-2 3×3 convolutions and two linear
    layers behind a :class:`Standardize` input. Striding instead of full-resolution
    convolutions makes it ~10× cheaper than :class:`SmallCNN` at 28–32 px, which keeps
    every method's ``ci`` run within minutes on two CPU cores."""

    def __init__(self, in_channels: int, side: int, num_classes: int, mean, std, width: int = 16, hidden: int = 64):
        super().__init__()
        self.standardize = Standardize(mean, std)
        out_side = (side + 1) // 2
        out_side = (out_side + 1) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(2 * width * out_side ** 2, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(self.standardize(x)))


class StatTracker(nn.Module):
    """Identity that records running mean/variance of its input per channel, as BatchNorm
    would, without normalising: FedRevive's 'no normalisation' ResNet keeps these
    statistics for its generator's feature-matching (BN) loss."""

    def __init__(self, channels: int, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                m = x.mean(dim=(0, 2, 3))
                v = x.var(dim=(0, 2, 3), unbiased=True) if x.numel() > x.shape[1] else torch.zeros_like(m)
                self.running_mean.lerp_(m, self.momentum)
                self.running_var.lerp_(v, self.momentum)
        return x


NORMS = ("none", "group", "batch")


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":   # 2 groups per layer, as in FL ResNets since Hsieh et al. 2020
        return nn.GroupNorm(2, channels)
    if kind == "none":
        return StatTracker(channels)
    raise UserError(f"unknown norm '{kind}'; valid: {', '.join(NORMS)}")


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = make_norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = make_norm(norm, cout)
        self.short = nn.Sequential()
        self.stride = stride
        if stride != 1 or cin != cout:
            # a 1×1 convolution of stride s is a stride-1 one on every s-th pixel; written
            # so, because torch 2.13's CPU backward of a strided 1×1 convolution in
            # channels-last format segfaults once the batch size changes between calls
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, 1, bias=False), make_norm(norm, cout))

    def forward(self, x):
        out = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(out)) + self.short(x[:, :, ::self.stride, ::self.stride]))


class ResNet18(nn.Module):
    """The CIFAR ResNet-18 (3×3 stem, no max-pool; He et al. 2016, as in FedRevive's code)
    with a choice of normalisation: ``none`` (statistics trackers only), ``group``, ``batch``."""

    def __init__(self, num_classes: int, mean, std, norm: str = "none", in_channels: int = 3, width: int = 64):
        super().__init__()
        self.standardize = Standardize(mean, std)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), make_norm(norm, width), nn.ReLU())
        layers, cin = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = width * 2 ** i
            layers += [BasicBlock(cin, cout, stride, norm), BasicBlock(cout, cout, 1, norm)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(cin, num_classes)
        channels_last(self)

    def forward(self, x):
        h = self.layers(self.stem(self.standardize(x)))
        return self.head(F.adaptive_avg_pool2d(h, 1).flatten(1))


class TextClassifier(nn.Module):
    """A transformer encoder over a pretrained encoder's *frozen* input embeddings.

    ``forward(ids)`` looks the tokens up in the frozen table (a non-persistent buffer:
    never trained, never aggregated); ``forward(inputs_embeds=..., attention_mask=...)``
    skips the lookup, so synthetic embeddings (FedRevive's text synthesis) feed the same
    network. A projection maps the table's width to ``d_model`` when they differ.
    Dropout defaults to 0: it would draw from the global RNG, and a client's update must
    depend only on its job seed.
    """

    def __init__(self, embeddings: torch.Tensor, num_classes: int, pad_id: int, max_len: int,
                 d_model: int = 0, layers: int = 2, heads: int = 4, ff: int = 0, dropout: float = 0.0):
        super().__init__()
        width = embeddings.shape[1]
        d_model = d_model or width
        self.register_buffer("embeddings", embeddings.detach().float(), persistent=False)
        self.pad_id = pad_id
        self.proj = nn.Linear(width, d_model) if d_model != width else nn.Identity()
        self.position = nn.Parameter(torch.zeros(1, max_len, d_model))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model, heads, ff or 4 * d_model, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embeddings)

    def forward(self, ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None):
        if inputs_embeds is None:
            inputs_embeds = self.embed(ids)
            if attention_mask is None:
                attention_mask = ids != self.pad_id
        if attention_mask is None:
            attention_mask = torch.ones(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
        mask = attention_mask.bool()
        h = self.proj(inputs_embeds) + self.position[:, :inputs_embeds.shape[1]]
        h = self.norm(self.encoder(h, src_key_padding_mask=~mask))
        m = mask.unsqueeze(-1).to(h.dtype)
        return self.head((h * m).sum(1) / m.sum(1).clamp_min(1.0))
