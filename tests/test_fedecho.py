import math

import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.methods.fedecho import EchoEnsemble, FedEcho, echo_loss, uncertainty_alpha

from conftest import make_context


def test_alpha_rises_with_entropy_between_its_bounds():
    c = 10
    confident = torch.full((1, c), 1e-6); confident[0, 3] = 1 - 9e-6
    mixed = torch.full((1, c), 0.05); mixed[0, :2] = 0.3
    uniform = torch.full((1, c), 1 / c)
    a = uncertainty_alpha(torch.cat([confident, mixed, uniform]), 0.2, 0.8)
    assert a[0] < a[1] < a[2]
    assert a[0] >= 0.2 - 1e-6 and math.isclose(float(a[0]), 0.2, abs_tol=1e-3)
    assert math.isclose(float(a[2]), 0.8, rel_tol=1e-6)


def test_echo_loss_is_kl_where_uncertain_and_ce_where_certain():
    student = torch.randn(2, 4)
    uniform = torch.full((1, 4), 0.25)
    onehot = torch.tensor([[1.0, 0, 0, 0]])
    # α = 1 everywhere → pure KL; α = 0 → pure CE on argmax
    kl = echo_loss(student[:1], uniform, 1.0, 1.0)
    expected_kl = (uniform * (uniform.log() - torch.log_softmax(student[:1], 1))).sum()
    assert torch.allclose(kl, expected_kl)
    ce = echo_loss(student[1:], onehot, 0.0, 0.0)
    assert torch.allclose(ce, torch.nn.functional.cross_entropy(student[1:], torch.tensor([0])))


def test_straggler_predictions_stay_in_the_ensemble():
    ens = EchoEnsemble(size=3, num_classes=2)
    straggler = torch.tensor([[1.0, 0.0]] * 3)
    ens.update(99, straggler)
    fast = torch.tensor([[0.0, 1.0]] * 3)
    for i in range(200):                         # many fast arrivals from a few clients
        ens.update(i % 4, fast)
    assert 99 in ens.probs and torch.equal(ens.probs[99].float(), straggler)
    assert torch.allclose(ens.mean(), torch.tensor([[0.2, 0.8]] * 3), atol=1e-3)   # 1 of 5 clients
    ens.update(99, fast)                         # its own fresh update replaces it
    assert torch.allclose(ens.mean(), fast, atol=1e-3)


class _Linear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)

    def forward(self, x):
        return self.lin(x)


def test_distillation_moves_the_model_toward_the_ensemble():
    torch.manual_seed(0)
    proxy = torch.randn(64, 2)
    model = _Linear()
    layout = Layout.of(model)
    ctx = make_context(_Linear, num_clients=4, concurrency=2, num_classes=2, extras={"proxy_x": proxy})
    x0 = layout.flatten(model).clone()
    # a client whose model predicts class 0 when x0 > 0
    teacher = _Linear()
    with torch.no_grad():
        teacher.lin.weight.copy_(torch.tensor([[5.0, 0.0], [-5.0, 0.0]]))
        teacher.lin.bias.zero_()
    t_params = layout.flatten(teacher)
    target = (proxy[:, 0] <= 0).long()

    def agreement(params):
        layout.load(model, params)
        return float((model(proxy).argmax(1) == target).float().mean())

    before = agreement(x0)
    # server_lr = 0: the FedBuff-style step is a no-op, so only distillation can move the model
    m2 = FedEcho(ctx, x0, buffer_size=1, server_lr=0.0, distill_steps=50, distill_lr=0.05)
    m2.receive(ClientUpdate(client=0, job=0, base_version=0, staleness=0, base=x0, params=t_params,
                            num_samples=1, arrival_time=0.0))
    assert m2.version == 1 and agreement(m2.params) > max(before, 0.9)
    assert m2.metrics()["ensemble_clients"] == 1


def test_synthetic_proxy_is_data_free_and_seeds_the_ensemble_from_teachers(tmp_path):

    from asyncfl_bench.simulation.run import RunOptions, execute
    from asyncfl_bench.tasks.digits import Digits
    from conftest import tiny_config

    cfg = tiny_config("fedecho", proxy_fraction=0.0, total_arrivals=40, fedecho__proxy="synthetic",
                      fedecho__synthetic_after=2, fedecho__proxy_size=64, fedecho__buffer_size=3)
    digits = Digits()
    summary, _ = execute(cfg, digits, digits.load(cfg["setup"], 0), RunOptions(tmp_path))
    assert summary["synthesis_seconds"] > 0
    # the teachers in FedRevive's buffer at freeze time plus every later arrival
    assert summary["ensemble_clients"] >= 5
    assert summary["ensemble_bytes"] == summary["ensemble_clients"] * 64 * 10 * 2   # float16, |U| = 64
    curve = (tmp_path / "digits" / "fedecho" / summary["run_id"] / "curve.csv").read_text()
    assert "nan" not in curve.lower()
