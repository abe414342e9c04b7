"""FedFa: after K arrivals every arrival makes the model the mean of the K latest client
models; the running sum equals the window recomputed from scratch."""
import pytest
import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.fedfa import FedFa
from conftest import make_context


def _fedfa(**hp):
    ctx = make_context(None, num_clients=4, concurrency=2, num_classes=2)
    return FedFa(ctx, torch.zeros(3), **hp)


def test_the_model_is_the_mean_of_the_last_k_client_models_from_the_kth_arrival_on():
    torch.manual_seed(0)
    m = _fedfa(window=3)
    models = [torch.randn(3) for _ in range(9)]
    for i, x_i in enumerate(models):
        base = m.params.clone()
        m.receive(ClientUpdate(client=i % 4, job=i, base_version=m.version, staleness=0, base=base,
                               params=x_i, num_samples=1, arrival_time=float(i)))
        if i < 2:    # warm-up: nothing moves, no version
            assert torch.equal(m.params, torch.zeros(3)) and m.version == 0
            continue
        assert m.version == i - 1                      # one version per arrival after warm-up
        window = torch.stack(models[i - 2:i + 1]).mean(0)
        assert torch.allclose(m.params, window, atol=1e-6), (i, m.params, window)
        assert len(m.window) == 3
    # the incremental form x ← x + (x_new − x_evicted)/K holds between consecutive arrivals
    x8, x7 = m.params, torch.stack(models[5:8]).mean(0)
    assert torch.allclose(x8, x7 + (models[8] - models[5]) / 3, atol=1e-6)


def test_a_window_of_one_is_the_latest_client_model():
    m = _fedfa(window=1)
    x = torch.tensor([1.0, -2.0, 3.0])
    m.receive(ClientUpdate(client=0, job=0, base_version=0, staleness=5, base=torch.zeros(3), params=x,
                           num_samples=1, arrival_time=0.0))
    assert torch.equal(m.params, x) and m.version == 1


def test_bad_window_names_the_fix():
    with pytest.raises(UserError, match="fedfa.window"):
        _fedfa(window=0)
