"""The server's Adam (asyncfl_bench.training.adam): torch.optim.Adam's step, bit for bit."""
import pytest
import torch

from asyncfl_bench.training.adam import Adam


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(6, 4, generator=g).requires_grad_()
    b = torch.randn(6, generator=g).requires_grad_()
    z = torch.randn(3, 4, generator=g).requires_grad_()
    x = torch.randn(16, 4, generator=g)
    return [w, b, z], x


def _loss(params, x, step):
    w, b, z = params
    return ((x @ w.T + b).tanh().pow(2).mean() + (z @ w.T).sin().mean() * (1 + step)) ** 2


def _train(make_opt, steps=12, opt=None):
    params, x = _problem()
    opt = opt or make_opt(params)
    for step in range(steps):
        opt.zero_grad()
        _loss(params, x, step).backward()
        if step == 4:   # a parameter without a gradient this step is left alone, as torch does
            params[2].grad = None
        opt.step()
    return params, opt


@pytest.mark.parametrize("betas,weight_decay", [((0.9, 0.999), 0.0), ((0.5, 0.999), 1e-2)])
def test_adam_is_torch_optims_step_bit_for_bit(betas, weight_decay):
    """Parameter groups with their own lr (FedRevive's synthesis: generator and latents)."""
    def groups(params):
        return [{"params": params[:2], "lr": 3e-3}, {"params": params[2:], "lr": 1e-2}]
    want, _ = _train(lambda p: torch.optim.Adam(groups(p), betas=betas, eps=1e-8, weight_decay=weight_decay))
    got, _ = _train(lambda p: Adam(groups(p), betas=betas, eps=1e-8, weight_decay=weight_decay))
    assert all(torch.equal(a, b) for a, b in zip(got, want))


def test_adam_lr_changes_and_state_resume_as_torch_optims():
    want, t = _train(lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3), steps=5)
    got, a = _train(lambda p: Adam(p, lr=1e-2, weight_decay=1e-3), steps=5)
    for opt in (t, a):
        opt.param_groups[0]["lr"] *= 0.5          # a schedule's decay between rounds
    saved = a.state_dict()
    params, x = _problem()
    with torch.no_grad():
        for p, q in zip(params, got):
            p.copy_(q)
    resumed = Adam(params, lr=1.0, weight_decay=1e-3)
    resumed.load_state_dict(saved)               # lr and moments come from the saved state
    for opt, ps in ((t, want), (a, got), (resumed, params)):
        for step in range(5, 9):
            opt.zero_grad()
            _loss(ps, x, step).backward()
            opt.step()
    assert all(torch.equal(p, q) and torch.equal(q, r) for p, q, r in zip(want, got, params))


def test_fused_adam_differs_only_by_rounding():
    want, _ = _train(lambda p: torch.optim.Adam(p, lr=1e-2))
    got, _ = _train(lambda p: Adam(p, lr=1e-2, fused=True))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
