import torch

from asyncfl_bench.methods.ca2fl import CA2FL
from conftest import arrive, make_context


def _ca2fl(n_clients=3, **hp):
    ctx = make_context(None, num_clients=n_clients, concurrency=2, num_classes=2)
    return CA2FL(ctx, torch.zeros(2), **hp)


def test_update_equals_the_formula_on_a_hand_computed_example():
    m = _ca2fl(n_clients=3, buffer_size=2, server_lr=0.5)
    # round 1: caches empty, h̄ = 0 → v = (Δ_a + Δ_b)/2
    arrive(m, 0, [2.0, 0.0])
    arrive(m, 1, [0.0, 4.0])
    assert torch.allclose(m.params, 0.5 * torch.tensor([1.0, 2.0]))
    # h̄ now = (h_0 + h_1 + h_2)/3 = ([2,0] + [0,4] + 0)/3
    assert torch.allclose(m.hbar, torch.tensor([2 / 3, 4 / 3]))
    # round 2: client 0 again (cache [2,0]) and client 2 (first time, cache 0)
    arrive(m, 0, [1.0, 1.0])        # calibration [1,1] − [2,0] = [−1, 1]
    arrive(m, 2, [3.0, 0.0])        # calibration [3,0] − 0     = [ 3, 0]
    v = torch.tensor([2 / 3, 4 / 3]) + (torch.tensor([-1.0, 1.0]) + torch.tensor([3.0, 0.0])) / 2
    assert torch.allclose(m.params, 0.5 * torch.tensor([1.0, 2.0]) + 0.5 * v)
    # caches hold the latest updates; h̄ averages them over all three clients
    assert torch.allclose(m.hbar, (torch.tensor([1.0, 1.0]) + torch.tensor([0.0, 4.0]) + torch.tensor([3.0, 0.0])) / 3)
    assert m.version == 2


def test_compact_cache_dtype_halves_memory():
    full, half = _ca2fl(cache_dtype="float32"), _ca2fl(cache_dtype="bfloat16")
    for m in (full, half):
        arrive(m, 0, [1.0, 2.0])
    assert half.cache_bytes() * 2 == full.cache_bytes()
