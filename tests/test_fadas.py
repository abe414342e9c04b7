"""FADAS: an AMSGrad server step per M arrivals whose rate shrinks to η/τ_max exactly when
the buffer's largest delay passes τ_c (yujiaw98/FADAS ``g_delay_adaptive.py``)."""
import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.fadas import FADAS
from conftest import arrive, make_context


def _fadas(**hp):
    ctx = make_context(None, num_clients=4, concurrency=2, num_classes=2)
    return FADAS(ctx, torch.zeros(2), **hp)


def _hand_trace(flushes, lr, b1=0.9, b2=0.99, eps=1e-8, tau_c=1):
    """x after each flush by Alg. 1 with the official code's bias correction, written out."""
    x, m, v, vhat, out = torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2), []
    for t, flush in enumerate(flushes, start=1):
        d = torch.stack([torch.tensor(delta) for delta, _ in flush]).mean(0)
        tau_max = max(tau for _, tau in flush)
        eta = lr / tau_max if tau_max > tau_c else lr
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        vhat = torch.maximum(vhat, v)
        x = x + eta / (1 - b1 ** t) * m / (vhat.sqrt() / (1 - b2 ** t) ** 0.5 + eps)
        out.append((x.clone(), vhat.clone()))
    return out


def test_each_flush_is_one_amsgrad_step_at_the_delay_adaptive_rate():
    """Three flushes of M = 2: τ_max = 1 (= τ_c: full η), 4 (η/4), 2 (η/2). The second
    flush's Δ is small, so v decays while v̂ holds its maximum and stays the denominator."""
    flushes = [[([2.0, -1.0], 0), ([2.0, -3.0], 1)],
               [([0.1, 0.1], 4), ([0.1, 0.1], 0)],
               [([1.0, -1.0], 2), ([0.5, 0.5], 1)]]
    m = _fadas(buffer_size=2, server_lr=0.01)
    for flush, (x, vhat) in zip(flushes, _hand_trace(flushes, 0.01)):
        (d0, t0), (d1, t1) = flush
        before = m.params.clone()
        arrive(m, 0, d0, t0)
        assert torch.equal(m.params, before)       # nothing moves before the M-th arrival
        arrive(m, 1, d1, t1)
        assert torch.allclose(m.params, x, atol=1e-7), (m.params, x)
        assert torch.equal(m.agg.opt.vmax, torch.maximum(m.agg.opt.vmax, m.agg.opt.v))
        assert torch.allclose(m.agg.opt.vmax, vhat)
    assert (m.agg.opt.vmax > m.agg.opt.v).any()    # v fell after flush 1; v̂ did not


@pytest.mark.parametrize("tau_max, tau_c, factor", [(0, 1, 1.0), (1, 1, 1.0), (2, 1, 0.5), (8, 1, 0.125),
                                                    (8, 8, 1.0), (9, 8, 1 / 9)])
def test_the_step_shrinks_by_exactly_one_over_tau_max_past_tau_c(tau_max, tau_c, factor):
    """Two twin servers see the same deltas; one's buffer carries staleness τ_max. The
    step, x − x₀, is the fresh twin's times 1/τ_max when τ_max > τ_c, and equal otherwise."""
    fresh, stale = (_fadas(buffer_size=2, server_lr=0.01, tau_c=tau_c) for _ in range(2))
    for m, tau in ((fresh, 0), (stale, tau_max)):
        arrive(m, 0, [1.0, -2.0], 0)
        arrive(m, 1, [3.0, 0.5], tau)
    assert fresh.params.abs().min() > 1e-3
    assert torch.allclose(stale.params, factor * fresh.params, rtol=1e-6, atol=0)


def test_plain_fadas_and_the_cap_rule():
    """delay_adaptive=false ignores delays; the cap rule min(η, 1/τ_max) binds only once
    1/τ_max < η."""
    def step(**hp):
        m = _fadas(buffer_size=1, **hp)
        arrive(m, 0, [1.0, 1.0], 40)
        return m.params
    plain = step(server_lr=0.1, delay_adaptive=False)
    assert torch.allclose(step(server_lr=0.1, delay_rule="scale"), plain / 40)
    assert torch.allclose(step(server_lr=0.1, delay_rule="cap"), plain * (1 / 40) / 0.1)
    small = step(server_lr=0.01, delay_adaptive=False)
    assert torch.allclose(step(server_lr=0.01, delay_rule="cap"), small)   # 1/40 > 0.01: no cap


def test_bad_settings_name_the_fix():
    with pytest.raises(UserError, match="delay_rule"):
        _fadas(delay_rule="min")
    with pytest.raises(UserError, match="tau_c"):
        _fadas(tau_c=-1)
