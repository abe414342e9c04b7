"""MIFA: every K arrivals the server applies the average of ALL clients' latest updates,
dividing by N, so a client that did not report still counts with what it last sent."""
import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.mifa import MIFA
from conftest import arrive, make_context


def _mifa(n=3, **hp):
    ctx = make_context(None, num_clients=n, concurrency=2, num_classes=2)
    return MIFA(ctx, torch.zeros(2), **hp)


def test_all_clients_fresh_is_fedavg_and_an_absent_client_counts_with_its_last_update():
    m = _mifa(n=3, buffer_size=3)
    first = ([1.0, 0.0], [0.0, 2.0], [3.0, 3.0])
    for client, delta in enumerate(first):
        arrive(m, client, delta)
    # full participation: x₁ = x₀ + mean of the three updates, FedAvg's step
    assert torch.allclose(m.params, torch.tensor([4.0, 5.0]) / 3) and m.version == 1
    # next round client 2 does not report (K = 2 arrivals): its old G_2 stays, divisor N = 3
    m.hp.buffer_size = 2
    x1 = m.params.clone()
    arrive(m, 0, [-1.0, 1.0])
    assert torch.equal(m.params, x1)                  # nothing before the K-th arrival
    arrive(m, 1, [2.0, 0.0])
    expected = x1 + (torch.tensor([-1.0, 1.0]) + torch.tensor([2.0, 0.0]) + torch.tensor([3.0, 3.0])) / 3
    assert torch.allclose(m.params, expected), (m.params, expected)


def test_unseen_clients_count_zero_over_n_or_are_excluded():
    """Before client 2 ever reports: ÷N with a zero entry (fdu_no_wait) or ÷ the filled
    entries (FLGo's form)."""
    zero, exclude = _mifa(n=4, buffer_size=2), _mifa(n=4, buffer_size=2, unseen="exclude")
    for m in (zero, exclude):
        arrive(m, 0, [4.0, 0.0])
        arrive(m, 1, [0.0, 8.0])
    assert torch.allclose(zero.params, torch.tensor([1.0, 2.0]))
    assert torch.allclose(exclude.params, torch.tensor([2.0, 4.0]))


def test_a_stale_update_replaces_the_clients_entry_by_its_own_delta():
    """G_i is Δ_i against the model the client started from, whatever the server holds now."""
    m = _mifa(n=2, buffer_size=1, server_lr=0.5)
    arrive(m, 0, [2.0, 2.0])                          # x = 0.5·(2, 2)/2
    arrive(m, 0, [4.0, 0.0], base=torch.zeros(2))     # replaces G_0, from the old base
    assert torch.allclose(m.table.latest[0], torch.tensor([4.0, 0.0]))
    assert torch.allclose(m.params, torch.tensor([0.5, 0.5]) + 0.5 * torch.tensor([4.0, 0.0]) / 2)


def test_bad_setting_names_the_fix():
    with pytest.raises(UserError, match="unseen"):
        _mifa(unseen="skip")
