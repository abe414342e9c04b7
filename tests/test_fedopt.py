"""Asynchronous FedOpt: the server's adaptive step follows Reddi et al.'s Algorithm 2 once
per full buffer, never per arrival."""
import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.aggregation import AdaptiveServerOptimizer
from asyncfl_bench.methods.fedopt import FedOpt
from conftest import arrive, make_context


def _fedopt(**hp):
    ctx = make_context(None, num_clients=4, concurrency=2, num_classes=2)
    return FedOpt(ctx, torch.zeros(2), **hp)


@pytest.mark.parametrize("kind", ["adam", "yogi", "adagrad"])
def test_each_flush_is_one_step_of_algorithm_2(kind):
    """Hand trace of x, m, v over two flushes of K = 2; the second flush's Δ is small, so
    Yogi's v shrinks (v > Δ²) where Adam's decays and Adagrad's still grows."""
    b1, b2, lr, eps = 0.9, 0.99, 0.1, 1e-3
    m = _fedopt(kind=kind, buffer_size=2, server_lr=lr, beta1=b1, beta2=b2, eps=eps)
    x, mom, v = torch.zeros(2), torch.zeros(2), torch.zeros(2)
    for flush in ([[4.0, -6.0], [4.0, 0.0]], [[0.1, 0.3], [0.3, 0.1]]):
        before, version = m.params.clone(), m.version
        arrive(m, 0, flush[0])   # the buffer is not full: nothing moves, the moments included
        assert torch.equal(m.params, before) and m.version == version and m.agg.opt.t == version
        d = (torch.tensor(flush[0]) + torch.tensor(flush[1])) / 2
        mom = b1 * mom + (1 - b1) * d
        v = {"adagrad": v + d * d, "yogi": v - (1 - b2) * d * d * torch.sign(v - d * d),
             "adam": b2 * v + (1 - b2) * d * d}[kind]
        x = x + lr * mom / (v.sqrt() + eps)
        arrive(m, 1, flush[1])
        assert m.version == version + 1
        assert torch.allclose(m.params, x, atol=1e-6, rtol=1e-5), (kind, m.params, x)
        assert torch.allclose(m.agg.opt.v, v, atol=1e-7) and torch.allclose(m.agg.opt.m, mom, atol=1e-7)
    first, second = torch.tensor([4.0, -3.0]) ** 2, torch.tensor([0.2, 0.2]) ** 2
    if kind == "yogi":   # v₁ = 0.01·Δ₁² > Δ₂², so v shrinks by (1 − β2)·Δ₂²
        assert torch.allclose(m.agg.opt.v, (1 - b2) * first - (1 - b2) * second)
    if kind == "adagrad":
        assert torch.allclose(m.agg.opt.v, first + second)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_bias_corrected_adam_is_torch_adam_on_the_negative_mean(amsgrad):
    """With bias correction (and AMSGrad's running maximum) the step is exactly torch's Adam
    taking −Δ as its gradient, an implementation written independently of ours."""
    torch.manual_seed(0)
    ours = AdaptiveServerOptimizer(0.05, "adam", 0.9, 0.999, 1e-8, amsgrad=amsgrad, bias_correction=True)
    x = torch.zeros(5)
    ref = torch.zeros(5, requires_grad=True)
    adam = torch.optim.Adam([ref], lr=0.05, betas=(0.9, 0.999), eps=1e-8, amsgrad=amsgrad)
    for step in range(6):
        delta = torch.randn(5) * (3.0 if step == 1 else 0.2)   # one large step, then small ones
        x = ours.apply(x, delta)
        ref.grad = -delta
        adam.step()
        assert torch.allclose(x, ref.detach(), atol=1e-6), (step, x, ref)


def test_staleness_weights_enter_the_mean_and_scale_drops_out_once_m_dominates_eps():
    """s(τ) weighs each delta inside the buffer's mean; Adam's first step is η·sign(Δ)
    (up to ε), whatever Δ's size, so the arrival's scale does not set the step."""
    a = _fedopt(buffer_size=1, server_lr=0.1, eps=1e-8, beta2=0.99)
    arrive(a, 0, [100.0, -0.5])
    # m = 0.1Δ, v = 0.01Δ² → m/√v = sign(Δ)
    assert torch.allclose(a.params, torch.tensor([0.1, -0.1]), atol=1e-6)
    b = _fedopt(buffer_size=2, server_lr=0.1, eps=1e-8, staleness="sqrt")
    arrive(b, 0, [1.0, 0.0], staleness=3)     # weighted 1/2
    arrive(b, 1, [-1.0, 1.0], staleness=0)    # weighted 1 → mean [-0.25, 0.5]
    assert torch.allclose(b.params, torch.tensor([-0.1, 0.1]), atol=1e-6)


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(UserError, match="valid: adam, yogi, adagrad"):
        _fedopt(kind="sgd")
