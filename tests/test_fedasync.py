"""FedAsync's three named variants: x ← (1 − α·s(τ))·x + α·s(τ)·x_i with the paper's s."""
import pytest
import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.fedasync import FedAsync, FedAsyncConst, FedAsyncHinge
from conftest import make_context


def _mixing_weight(cls, tau):
    """The share of the client's model in the new server model, read off one arrival."""
    ctx = make_context(None, num_clients=4, concurrency=2, num_classes=2)
    m = cls(ctx, torch.zeros(2))
    m.receive(ClientUpdate(client=0, job=0, base_version=0, staleness=tau, base=torch.zeros(2),
                           params=torch.ones(2), num_samples=1, arrival_time=0.0))
    return m.params[0].item()


@pytest.mark.parametrize("tau", [0, 3, 4, 5, 12])
def test_each_variant_mixes_with_alpha_times_its_staleness_function(tau):
    a = 0.6
    assert _mixing_weight(FedAsyncConst, tau) == pytest.approx(a)
    assert _mixing_weight(FedAsync, tau) == pytest.approx(a * (1 + tau) ** -0.5)
    hinge = 1.0 if tau <= 4 else 1 / (10 * (tau - 4) + 1)          # a = 10, b = 4
    assert _mixing_weight(FedAsyncHinge, tau) == pytest.approx(a * hinge)


def test_the_variants_are_registered_and_differ_only_in_staleness():
    from asyncfl_bench.config.registry import methods
    registry = methods()
    for cls in (FedAsyncConst, FedAsyncHinge):
        assert registry[cls.name] is cls
        diff = {k for k in FedAsync.defaults if cls.defaults[k] != FedAsync.defaults[k]}
        assert diff == {"staleness"}
