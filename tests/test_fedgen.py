"""FedGen: head convention, generator learning from heads, payload and regulariser."""
import pytest
import torch
from torch import nn

from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.distill.head import head_name
from asyncfl_bench.methods.fedgen import FedGen
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.models import MLP, SmallCNN

from conftest import tiny_config, make_context


def make(**hp):
    torch.manual_seed(0)
    build = lambda: SmallCNN(1, 8, 4, width=4, hidden=8)
    model = build()
    layout = Layout.of(model)
    ctx = make_context(build, num_clients=4, concurrency=2, num_classes=4)
    return FedGen(ctx, layout.flatten(model).clone(), **hp), model


def test_head_is_the_last_linear_layer():
    assert head_name(SmallCNN(1, 8, 10), 10) == "head.2"
    assert head_name(MLP(64, 10), 10) == "net.3"
    with pytest.raises(UserError):
        head_name(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten()), 10)
    with pytest.raises(UserError):
        head_name(nn.Sequential(nn.Linear(4, 10), nn.Linear(10, 3)), 10)


def arrive(m, model, client, labels, head_w=None):
    """A client update whose head is ``head_w`` and whose label counts are ``labels``."""
    base = m.params.clone()
    m.ctx.layout.load(model, base)
    if head_w is not None:
        with torch.no_grad():
            model.head[2].weight.copy_(head_w)
            model.head[2].bias.zero_()
    params = m.ctx.layout.flatten(model).clone()
    payload = m.payload(client)
    payload["label_counts"] += torch.bincount(torch.tensor(labels), minlength=4)
    m.receive(ClientUpdate(client=client, job=0, base_version=m.version, staleness=0, base=base,
                           params=params, num_samples=len(labels), arrival_time=0.0, payload=payload))


def test_generator_learns_features_the_label_holders_heads_recognise():
    m, model = make(buffer_size=2, gen_steps=150, gen_lr=1e-2, gen_batch=32, server_lr=0.0)
    # client 0 knows classes 0, 1 (its head reads coordinates 0, 1), client 1 classes 2, 3
    w0 = torch.zeros(4, 8)
    w0[0, 0], w0[1, 1] = 5.0, 5.0
    w1 = torch.zeros(4, 8)
    w1[2, 2], w1[3, 3] = 5.0, 5.0
    arrive(m, model, 0, [0] * 20 + [1] * 20, w0)
    arrive(m, model, 1, [2] * 20 + [3] * 20, w1)
    assert m.rounds == 1 and m.labels.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        y = torch.arange(4).repeat(25)
        z, _ = m.generator(y, torch.Generator().manual_seed(3))
    # each class is recognised by the head of the client that holds it (w_k(y) ≈ 1 there)
    pred0 = (z @ w0.T).argmax(1)
    pred1 = (z @ w1.T).argmax(1)
    acc = torch.where(y < 2, pred0 == y, pred1 == y).float().mean()
    assert acc > 0.9


def test_payload_ships_the_frozen_generator_after_the_first_round_with_decayed_weights():
    m, model = make(buffer_size=1, gen_steps=2, server_lr=0.0)
    first = m.payload(0)
    assert first["generator"] is None
    reg = m.client_regularizer(first)
    x, y = torch.rand(6, 1, 8, 8), torch.tensor([0, 0, 1, 2, 2, 2])
    assert reg(model, x, y, model(x)).item() == 0.0
    assert first["label_counts"].tolist() == [2, 1, 3, 0]        # labels counted for the server
    arrive(m, model, 0, [0, 1, 2])
    p = m.payload(1)
    assert p["generator"] is not None and p["alpha"] == pytest.approx(10 * 0.98 ** m.version)
    p["generator"]["net.0.weight"].add_(1.0)                      # shipped a copy, not the live one
    assert not torch.equal(p["generator"]["net.0.weight"], m.generator.state_dict()["net.0.weight"])


def test_regulariser_adds_a_loss_that_trains_the_head_on_generated_features():
    m, model = make(buffer_size=1, gen_steps=2, server_lr=0.0)
    arrive(m, model, 0, [0, 1, 2, 3])
    reg = m.client_regularizer(m.payload(1))
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 4, (8,))
    model.zero_grad()
    loss = reg(model, x, y, model(x))
    assert loss.item() > 0
    loss.backward()
    assert model.head[2].weight.grad.abs().sum() > 0


def test_tiny_run_is_deterministic(tmp_path, digits):
    cfg = tiny_config("fedgen", seed=2, fedgen__gen_steps=5)
    data = digits.load(cfg["setup"], cfg["seed"])
    a, _ = execute(cfg, digits, data, RunOptions(tmp_path / "a"))
    b, _ = execute(cfg, digits, data, RunOptions(tmp_path / "b"))
    assert a["final_accuracy"] == b["final_accuracy"] and a["generator_rounds"] > 0
