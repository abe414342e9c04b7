import torch

from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.augment import crop_flip
from asyncfl_bench.tasks.models import FemnistCNN, ResNet18, StatTracker, TextClassifier


def test_femnist_cnn_matches_the_card():
    m = FemnistCNN()
    assert m.head[0].in_features == 1600 and [l.out_features for l in m.head if hasattr(l, "out_features")] == [200, 100, 62]
    convs = [l for l in m.features if isinstance(l, torch.nn.Conv2d)]
    assert len(convs) == 3 and all(c.out_channels == 64 and c.kernel_size == (3, 3) for c in convs)
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    assert torch.allclose(m(x), m(x.float() / 255), atol=1e-5)     # uint8 and [0,1] floats agree


def test_resnet18_norms():
    x = torch.rand(4, 3, 32, 32)
    sizes = {}
    for norm in ("none", "group", "batch"):
        torch.manual_seed(0)
        m = ResNet18(10, [0.5] * 3, [0.25] * 3, norm, width=8)
        assert m(x).shape == (4, 10)
        sizes[norm] = Layout.of(m).size
    # the trackers' running stats are aggregated state, like BatchNorm's; GroupNorm has none
    assert sizes["none"] < sizes["batch"] and sizes["group"] < sizes["batch"]
    assert any(isinstance(mod, StatTracker) for mod in ResNet18(10, [0] * 3, [1] * 3, "none", width=8).modules())


def test_stat_tracker_records_statistics_without_normalising():
    t = StatTracker(3, momentum=1.0)
    x = torch.randn(16, 3, 4, 4) * 3 + 2
    assert torch.equal(t(x), x)
    assert torch.allclose(t.running_mean, x.mean((0, 2, 3)))
    t.eval()
    t(x * 10)
    assert torch.allclose(t.running_mean, x.mean((0, 2, 3)))           # frozen in eval mode


def test_text_classifier_frozen_embeddings_and_inputs_embeds():
    torch.manual_seed(0)
    emb = torch.randn(50, 12)
    m = TextClassifier(emb, 4, pad_id=0, max_len=8, d_model=16, layers=1, heads=2).eval()
    assert not any("embeddings" in n for n in Layout.of(m).names)     # never trained nor aggregated
    ids = torch.tensor([[5, 7, 9, 0, 0, 0], [3, 0, 0, 0, 0, 0]])
    out = m(ids)
    assert out.shape == (2, 4)
    assert torch.allclose(m(inputs_embeds=emb[ids], attention_mask=ids != 0), out, atol=1e-5)
    assert torch.allclose(m(ids[:, :3]), out, atol=1e-5)                # padding does not change the result
    assert not torch.allclose(m(torch.tensor([[5, 7, 8]])), out[:1], atol=1e-4)


def test_crop_flip_is_batched_seeded_and_shape_preserving():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    same = crop_flip(x, torch.Generator().manual_seed(0), pad=0, flip=False)
    assert torch.equal(same, x)
    a = crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    b = crop_flip(x, torch.Generator().manual_seed(1), pad=2)
    assert torch.equal(a, b) and a.shape == x.shape
    flips = [crop_flip(x, torch.Generator().manual_seed(s), pad=0) for s in range(20)]
    assert any(torch.equal(f[0], x[0].flip(-1)) for f in flips) and any(torch.equal(f[0], x[0]) for f in flips)
    shifted = [crop_flip(x, torch.Generator().manual_seed(s), pad=2, flip=False) for s in range(20)]
    # a shifted crop shows zero padding on some border and keeps the pixels' row structure
    assert any((s[0, :, 0, :] == 0).all() or (s[0, :, :, 0] == 0).all() for s in shifted)


def test_channels_last_models_keep_values_and_logical_parameter_order():
    """FemnistCNN and ResNet18 store convolution weights channels-last (speed); Layout
    must still read and write every value in logical (NCHW) order, and the output must
    be the contiguous model's up to float reordering, at every batch size (a changing
    batch size is what crashed a strided 1×1 convolution's backward in this format)."""
    for build, shape in ((lambda: FemnistCNN(10), (1, 28, 28)),
                         (lambda: ResNet18(10, [0.5] * 3, [0.25] * 3, "group", width=4), (3, 16, 16))):
        torch.manual_seed(0)
        model = build()
        name, conv = next((n, m) for n, m in model.named_modules()
                          if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
        layout = Layout.of(model)
        init = layout.flatten(model)
        vec = torch.randn(layout.size)
        layout.load(model, vec)
        assert torch.equal(layout.flatten(model), vec)
        assert torch.equal(conv.weight.detach(), layout.unflatten(vec)[name + ".weight"])
        plain = build().to(memory_format=torch.contiguous_format)
        layout.load(model, init)
        layout.load(plain, init)
        for n in (32, 20, 31, 1):
            x = torch.randint(0, 256, (n, *shape), dtype=torch.uint8)
            out = model(x)
            assert torch.allclose(out, plain(x), rtol=1e-4, atol=1e-4)
            out.square().sum().backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_resnet_shortcut_is_a_strided_1x1_convolution():
    """The downsampling shortcut convolves every other pixel at stride 1: the same map
    as the usual stride-2 1×1 convolution (kept so because of that kernel's crash)."""
    torch.manual_seed(0)
    block = ResNet18(10, [0.5] * 3, [0.25] * 3, "none", width=4).layers[2]   # first block of stage 2
    conv = block.short[0]
    assert block.stride == 2 and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
    x = torch.randn(3, 4, 9, 9)
    expected = torch.nn.functional.conv2d(x, conv.weight.detach().contiguous(), stride=2)
    assert torch.allclose(conv(x[:, :, ::2, ::2]), expected, atol=1e-6)


def _pool_case(n=40, seed=0):
    """Post-ReLU activations with ties: zeros, and equal positive values in flat regions."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, 32, 8, 8, generator=g))
    x[:, :, :4, :4] = 0.5        # 2×2 windows whose four values are equal
    return x


def test_max_pool_fast_path_is_torchs_bit_for_bit_with_ties_and_second_derivatives():
    """The channels-last max pool gives torch's output, gradient (each window's gradient to
    the same element on ties) and gradient of the gradient (GI-switch's create_graph),
    exactly."""
    from asyncfl_bench.tasks.models import MaxPool2d
    x = _pool_case()
    assert x.numel() >= MaxPool2d.LARGE
    results = []
    for pool in (torch.nn.MaxPool2d(2), MaxPool2d(2)):
        xi = x.clone().requires_grad_()
        out = pool(xi)
        w = torch.linspace(-1, 1, out.numel()).view_as(out)
        (g,) = torch.autograd.grad((out * w).sum(), xi, create_graph=True)
        (gg,) = torch.autograd.grad((g * g.detach().sign() * 3).sum() + (g ** 2).sum(), xi)
        results.append((out.detach(), g.detach(), gg))
    for a, b in zip(*results):
        assert torch.equal(a, b)
    assert results[0][1].abs().sum() > 0


def test_max_pool_fast_path_under_vmap_is_torchs(monkeypatch):
    """Under vmap (stacked clients) the fast path folds the job dimension into the batch:
    the same output and gradients as torch's pool under vmap."""
    from torch.func import vmap
    from asyncfl_bench.tasks import models
    calls, real = [], models._MaxPoolChannelsLast.vmap

    def spy(*args):
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(models._MaxPoolChannelsLast, "vmap", staticmethod(spy))
    x = torch.stack([_pool_case(32, seed) for seed in range(3)])    # 3 jobs of 32 samples
    results = []
    for pool in (torch.nn.MaxPool2d(2), models.MaxPool2d(2)):
        xi = x.clone().requires_grad_()
        out = vmap(pool)(xi)
        (g,) = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), xi)
        results.append((out.detach(), g))
    assert calls and all(torch.equal(a, b) for a, b in zip(*results))
