"""FedGen: head convention, generator learning from heads, payload and regulariser."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.distill.generator import FeatureGenerator, diversity_loss
from asyncfl_bench.methods.distill.head import head_name
from asyncfl_bench.methods.fedgen import FedGen
from asyncfl_bench.training.batched import TOLERANCE, BatchedTrainer
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import LocalTrainer
from asyncfl_bench.training.path import BatchClients
from asyncfl_bench.tasks.models import MLP, SmallCNN

from conftest import tiny_config, make_context

CPU = torch.device("cpu")


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


def _eq6(m, payload, model, y, logits):
    """Eq. 6's regulariser written out with torch's own losses and a FeatureGenerator
    module: the straightforward form the vectorisable LossTerm must equal."""
    hp = m.hp
    gen = FeatureGenerator(4, 8, hp.gen_hidden, hp.gen_noise)
    gen.load_state_dict(payload["generator"])
    gen.eval()
    rng = torch.Generator().manual_seed(payload["seed"])
    head = model.head[2]
    with torch.no_grad():
        target = F.softmax(head(gen(y, rng)[0]), dim=1)
    latent = payload["beta"] * F.kl_div(F.log_softmax(logits, dim=1), target, reduction="batchmean")
    y_hat = payload["labels"][torch.randint(len(payload["labels"]), (hp.client_gen_batch,), generator=rng)]
    with torch.no_grad():
        z = gen(y_hat, rng)[0]
    teacher = payload["alpha"] * F.cross_entropy(head(z), y_hat)
    return (hp.client_gen_batch / len(y)) * teacher + latent


def test_regulariser_term_is_eq6_as_torch_losses_compute_it():
    m, model = make(buffer_size=1, gen_steps=3, server_lr=0.0)
    arrive(m, model, 0, [0, 1, 2, 3, 3])
    payload = m.payload(1)
    x, y = torch.rand(7, 1, 8, 8), torch.tensor([0, 1, 1, 2, 3, 3, 0])
    logits = model(x)
    got = m.client_regularizer(payload)(model, x, y, logits)
    want = _eq6(m, payload, model, y, logits)
    assert got.item() == pytest.approx(want.item(), rel=1e-6) and want.item() > 0
    (g_got,) = torch.autograd.grad(got, model.head[2].weight, retain_graph=True)
    (g_want,) = torch.autograd.grad(want, model.head[2].weight)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-7)


LOCAL = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3, "batch_size": 8, "epochs": 2,
         "iterations": 0}


@pytest.mark.parametrize("precision,bound", [(torch.float64, 1e-10), (torch.float32, TOLERANCE["sgd"]["update"])],
                         ids=["f64", "f32"])
def test_batched_jobs_add_the_regulariser_as_sequential_training_does(precision, bound):
    """FedGen's clients train batched: the vmapped step adds each job's regulariser from
    its own generator and random stream (a job dispatched before the first generator
    round only counts labels), with the sequential path's updates, losses and counts."""
    m, model = make(buffer_size=1, gen_steps=3, server_lr=0.0)
    early = m.payload(2)                  # before the first round: counts only
    arrive(m, model, 0, [0, 1, 2, 3, 3])
    payloads = [m.payload(1), early, m.payload(3)]
    layout = m.ctx.layout
    build = lambda: SmallCNN(1, 8, 4, width=4, hidden=8).to(precision)
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(32, 1, 8, 8, generator=g).to(precision), torch.randint(0, 4, (32,), generator=g)
    clients = [torch.arange(0, 19), torch.arange(19, 24), torch.arange(24, 32)]   # short batches, unequal steps
    base = layout.flatten(model).clone().to(precision)
    bases = [base, base + 0.01 * torch.randn(base.shape, generator=g).to(precision), base]
    seeds = [11, 22, 33]
    copies = [{**p, "label_counts": p["label_counts"].clone()} for p in payloads]
    seq = LocalTrainer(build, layout, LOCAL, CPU)
    expected = [seq.train(b, x[c], y[c], s, m.client_regularizer(p))
                for b, c, s, p in zip(bases, clients, seeds, copies)]
    got = BatchedTrainer(build, layout, LOCAL, CPU).train_many(
        bases, x, y, clients, seeds, terms=[m.client_loss_term(p) for p in payloads])
    for (p_seq, l_seq), (p_bat, l_bat), b in zip(expected, got, bases):
        assert float((p_bat - p_seq).norm() / (p_seq - b).norm()) <= bound
        assert l_bat == pytest.approx(l_seq, rel=1e-6 if precision == torch.float64 else 1e-5)
    for want, have, c in zip(copies, payloads, clients):
        assert torch.equal(have["label_counts"], want["label_counts"])
        assert have["label_counts"].sum() == 2 * len(c)      # two epochs of labels counted
    # the regulariser changed the updates: without it the same jobs end elsewhere
    plain = BatchedTrainer(build, layout, LOCAL, CPU).train_many(bases, x, y, clients, seeds)
    assert float((plain[0][0] - got[0][0]).norm()) > 1e-3 * float((got[0][0] - bases[0]).norm())


def test_a_batched_run_trains_fedgen_clients_in_groups(tmp_path, digits):
    cfg = tiny_config("fedgen", seed=2, fedgen__gen_steps=5)
    data = digits.load(cfg["setup"], cfg["seed"])
    summary, _ = execute(cfg, digits, data, RunOptions(tmp_path / "a", batch_clients=BatchClients.parse("4")))
    t = summary["training"]
    assert summary["training_path"] == "batched(N=4)" and summary["generator_rounds"] > 0
    assert t["batched_jobs"] > t["sequential_jobs"] and t["regularized_jobs"] == 0


@pytest.mark.parametrize("precision,bound", [(torch.float32, 1e-4), (torch.float64, 1e-7)], ids=["f32", "f64"])
def test_generator_round_equals_its_straightforward_form(precision, bound):
    """A generator round (all K heads in one batched product, CE as one gather, torch's
    fused Adam) against Eq. 4-5 written out: a loop over the heads with F.cross_entropy,
    and torch.optim.Adam. The same draws; only rounding differs, which Adam amplifies on
    near-zero gradient entries (its step is ≈ lr·g/|g|). Measured over 25 steps: float32
    ≤ 1.9e-5 of a tensor's norm, float64 ≤ 1.5e-8; the losses within 1e-5."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(precision)
    try:
        m, _ = make(buffer_size=3, gen_steps=25, gen_lr=1e-2, server_lr=0.0)
        g = torch.Generator().manual_seed(4)
        m.heads = [(torch.randn(4, 8, generator=g), torch.randn(4, generator=g)) for _ in range(3)]
        m.label_counts = [torch.tensor([5, 0, 2, 1]), torch.tensor([0, 3, 0, 9]), torch.tensor([1, 1, 0, 4])]
        ref = copy.deepcopy(m.generator).train()
        opt = torch.optim.Adam(ref.parameters(), lr=1e-2, weight_decay=1e-2)
        rng = torch.Generator()
        rng.set_state(m.rng.get_state())
        counts = torch.stack(m.label_counts).to(precision) + 1
        qualified = (counts.max(0).values > 1).nonzero().flatten()
        weights = counts / counts.sum(0, keepdim=True)
        want = []
        for _ in range(25):
            y = qualified[torch.randint(len(qualified), (32,), generator=rng)]
            z, eps = ref(y, rng)
            teacher = sum((weights[k, y] * F.cross_entropy(F.linear(z, w, bias), y, reduction="none")).mean()
                          for k, (w, bias) in enumerate(m.heads))
            loss = teacher + diversity_loss(eps, z)
            opt.zero_grad()
            loss.backward()
            opt.step()
            want.append(loss.item())
        got = m.train_generator()
    finally:
        torch.set_default_dtype(before)
    assert got == pytest.approx(want, rel=1e-5) and want[-1] < want[0]      # it learnt
    for (name, p), q in zip(m.generator.named_parameters(), ref.parameters()):
        assert p.dtype == precision and float((p - q).detach().norm() / q.detach().norm()) <= bound, name
    assert m.gen_opt.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.98)     # ExponentialLR per round


def test_generator_optimiser_state_survives_a_resume():
    m, _ = make(buffer_size=1, gen_steps=3, server_lr=0.0)
    m.heads, m.label_counts = [(torch.randn(4, 8), torch.zeros(4))], [torch.tensor([3, 3, 0, 2])]
    m.train_generator()
    saved = m.server_state()
    other, _ = make(buffer_size=1, gen_steps=3, server_lr=0.0)
    other.load_server_state(saved)
    for a in (m, other):
        a.heads, a.label_counts = [(torch.ones(4, 8), torch.zeros(4))], [torch.tensor([1, 3, 3, 2])]
    assert m.train_generator() == other.train_generator()
    assert all(torch.equal(p, q) for p, q in zip(m.generator.parameters(), other.generator.parameters()))
