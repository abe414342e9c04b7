"""DC-ASGD on a quadratic, where the fresh update is known in closed form.

f(x) = ½ Σ h_j x_j², one local gradient step of size η: Δ(x) = −η·h⊙x. A client
that started from x_b sends Δ(x_b); the fresh update at x_t is Δ(x_t).
"""
import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.dc_asgd import DCASGD, compensate
from conftest import make_context

ETA = 0.1
LOCAL = {"optimizer": "sgd", "lr": ETA, "momentum": 0.0, "weight_decay": 0.0,
         "batch_size": 1, "epochs": 1, "iterations": 1}


def _quadratic(dim: int, lo: float, hi: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = 1 + 4 * torch.rand(dim, generator=g)                   # curvatures in [1, 5]
    x_b = lo + (hi - lo) * torch.rand(dim, generator=g)         # the client's (stale) base
    x_t = x_b + 0.5 * (torch.rand(dim, generator=g) - 0.5)      # the server moved on
    step = lambda x: -ETA * h * x
    return x_b, x_t, step(x_b), step(x_t)


def _method(dim: int, **hp) -> DCASGD:
    module = torch.nn.Linear(dim, 1, bias=False)
    ctx = make_context(lambda: module, num_clients=1, concurrency=1, num_classes=2, local=LOCAL)
    return DCASGD(ctx, torch.zeros(dim), **hp)


def _arrive(method: DCASGD, x_b, x_t, stale, staleness=5):
    method.params = x_t.clone()                 # the server model the update arrives at
    method.receive(ClientUpdate(client=0, job=0, base_version=0, staleness=staleness, base=x_b,
                                params=x_b + stale, num_samples=1, arrival_time=0.0))
    return method.params - x_t                  # the delta the server applied


@pytest.mark.parametrize("variant,lo,hi", [("constant", 1.0, 3.0), ("adaptive", 0.2, 0.8)])
def test_compensated_delta_is_closer_to_the_fresh_one(variant, lo, hi):
    # constant λ = 0.04 helps while 0 < λ·h·x_b² < 2; adaptive λ₀/|g| while |x_b| < 1
    x_b, x_t, stale, fresh = _quadratic(64, lo, hi)
    m = _method(64, variant=variant, alpha=1.0)       # FedAsync-style with a = 1: x ← x_t + Δ̃
    applied = _arrive(m, x_b, x_t, stale)
    err_stale = (stale - fresh).norm()
    err_dc = (applied - fresh).norm()
    assert err_dc < 0.8 * err_stale, (variant, float(err_dc), float(err_stale))
    # the opposite sign (a gradient formula applied to a delta unchanged) makes it worse
    wrong = stale + (0.04 / ETA) * stale * stale * (x_t - x_b)
    if variant == "constant":
        assert (wrong - fresh).norm() > err_stale


def test_compensation_formula_and_no_change_without_delay():
    d, b, n = torch.tensor([0.2, -0.4]), torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0])
    # Δ − (λ/η)·Δ²·(x_t − x_b) with λ/η = 0.5
    assert torch.allclose(compensate(d, b, n, 0.05, 0.1), torch.tensor([0.2 - 0.5 * 0.04, -0.4 + 0.5 * 0.16]))
    x_b, _, stale, _ = _quadratic(8, 1.0, 2.0)
    m = _method(8, variant="constant", alpha=1.0)
    assert torch.allclose(_arrive(m, x_b, x_b, stale, staleness=0), stale, atol=1e-6)


def test_fedbuff_aggregation_waits_for_the_buffer():
    x_b, x_t, stale, _ = _quadratic(8, 1.0, 2.0)
    m = _method(8, variant="constant", aggregation="fedbuff", buffer_size=2)
    _arrive(m, x_b, x_t, stale)
    assert m.version == 0
    _arrive(m, x_b, m.params, stale)
    assert m.version == 1


def test_bad_options_are_user_errors():
    with pytest.raises(UserError, match="variant"):
        _method(4, variant="fancy")
    with pytest.raises(UserError, match="aggregation"):
        _method(4, aggregation="median")


def test_server_state_survives_a_weights_only_checkpoint(tmp_path):
    x_b, x_t, stale, _ = _quadratic(8, 0.2, 0.8)
    m = _method(8, aggregation="fedbuff", buffer_size=3)
    _arrive(m, x_b, x_t, stale)
    torch.save(m.server_state(), tmp_path / "s.pt")
    again = _method(8, aggregation="fedbuff", buffer_size=3)
    again.load_server_state(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.equal(again.ms, m.ms) and again.count == 1 and len(again.agg.buffer) == 1
