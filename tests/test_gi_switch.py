"""gi-switch: inversion, warm start, the switching rule and the α blend."""
import numpy as np
import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.gi_switch import GISwitch, SwitchRule
from asyncfl_bench.methods.gi_switch.emulation import LocalEmulator
from asyncfl_bench.methods.gi_switch.inversion import Recovered, invert, relative_l1
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.models import MLP
from asyncfl_bench.training.local import LocalTrainer
from conftest import make_context

LOCAL = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0,
         "batch_size": 4, "epochs": 1, "iterations": 0}
build = lambda: MLP(6, 3, hidden=8)


# tiny double-backward graphs: threads only add overhead
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def client():
    """One client's real data and two of its real updates (mini-batch SGD) from two bases."""
    torch.manual_seed(0)
    layout = Layout.of(build())
    x0 = layout.flatten(build())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
    trainer = LocalTrainer(build, layout, LOCAL, torch.device("cpu"))
    p1, _ = trainer.train(x0, x, y, seed=1)
    x1 = x0 + 0.5 * (p1 - x0)                       # the server moved on
    p2, _ = trainer.train(x1, x, y, seed=2)
    return dict(layout=layout, x0=x0, p1=p1, x1=x1, p2=p2, x=x, y=y, trainer=trainer)


def _invert(c, emulator, base, params, init, seed, iterations=150, tol=None):
    return invert(emulator, base, emulator.trainable(params - base), init, 16, seed, iterations, 0.1, tol=tol)


def _cold(seed):
    return Recovered.random(8, (6,), 3, torch.Generator().manual_seed(seed))


def test_inversion_loss_falls_and_warm_start_needs_fewer_iterations(client):
    em = LocalEmulator(build(), client["layout"], LOCAL)
    first, losses = _invert(client, em, client["x0"], client["p1"], _cold(3), seed=1)
    assert min(losses[-10:]) < 0.35 * losses[0]                   # falls over iterations
    assert np.mean(losses[100:]) < np.mean(losses[:50])
    # the same client's next update, from a newer base: cold vs warm from its previous D_rec
    _, cold = _invert(client, em, client["x1"], client["p2"], _cold(4), seed=2)
    goal = min(cold)
    _, warm = _invert(client, em, client["x1"], client["p2"], first, seed=2, tol=goal)
    assert warm[-1] <= goal
    reach_cold, reach_warm = int(np.argmax(np.array(cold) <= goal)), len(warm) - 1
    assert reach_warm < 0.5 * reach_cold, (reach_warm, reach_cold)


def test_emulated_update_is_differentiable_in_the_data(client):
    em = LocalEmulator(build(), client["layout"], LOCAL)
    rec = _cold(5)
    x = rec.x.clone().requires_grad_(True)
    y = rec.label_logits.clone().requires_grad_(True)
    em.delta(client["x0"], x, y, 16, 0, create_graph=True).abs().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_switches_exactly_at_the_first_e1_above_e2():
    rule = SwitchRule(blend=10)
    seq = [(0.2, 0.9), (0.3, 0.8), (0.5, 0.5), (0.4, 0.6), (0.7, 0.65), (0.1, 0.9)]
    fired = [rule.observe(e1, e2, version=10 * i) for i, (e1, e2) in enumerate(seq)]
    assert fired == [False, False, False, False, True, False]    # E1 = E2 is not worse
    assert rule.switched_at == 40
    assert len(rule.checks) == 5                                   # no measuring after the switch
    never = SwitchRule(blend=10, enabled=False)
    assert not any(never.observe(e1, e2, v) for v, (e1, e2) in enumerate(seq))
    assert never.alpha(10**6) == 1.0


def test_alpha_blend_is_continuous_from_estimate_to_stale():
    rule = SwitchRule(blend=20)
    rule.observe(0.9, 0.1, version=50)
    versions = np.arange(0, 120)
    alpha = np.array([rule.alpha(int(v)) for v in versions])
    assert (alpha[versions <= 50] == 1).all() and (alpha[versions >= 70] == 0).all()
    assert np.abs(np.diff(alpha)).max() <= 1 / 20 + 1e-12            # no jump anywhere
    assert (np.diff(alpha) <= 0).all()
    est, stale = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 0.0])
    blend = lambda a: a * est + (1 - a) * stale
    assert torch.equal(blend(rule.alpha(50)), est) and torch.equal(blend(rule.alpha(70)), stale)


def _gi(layout, **hp):
    ctx = make_context(build, num_clients=2, concurrency=2, num_classes=3, local=LOCAL, extras={"input_shape": (6,)})
    return GISwitch(ctx, torch.zeros(layout.size), **{"iterations": 30, "min_staleness": 3,
                                                       "aggregation": "fedasync", "alpha": 1.0, **hp})


def test_method_inverts_stale_updates_and_measures_e1_e2_on_the_next(client):
    c, layout = client, client["layout"]
    m = _gi(layout)
    m.params, m.version = c["x1"].clone(), 7
    stale = ClientUpdate(client=0, job=0, base_version=0, staleness=7, base=c["x0"], params=c["p1"],
                         num_samples=16, arrival_time=1.0, job_seed=1)   # p1 trained under seed 1
    m.receive(stale)
    assert m.inversions == 1 and m.inversion_seconds > 0 and 0 in m.recovered
    assert m.recovered[0].seed == 1                                    # fitted under the job's own seed
    assert not torch.allclose(m.params - c["x1"], c["p1"] - c["x0"])   # the estimate, not the stale delta
    # the same client's next update, from a base at or after the estimate's version
    base = m.params.clone()
    fresh_params, _ = c["trainer"].train(base, c["x"], c["y"], seed=9)
    fresh = ClientUpdate(client=0, job=1, base_version=8, staleness=0, base=base, params=fresh_params,
                         num_samples=16, arrival_time=2.0, job_seed=9)
    m.receive(fresh)
    (version, e1, e2), = m.rule.checks
    em = m.emulator
    want_e2 = float(relative_l1(em.trainable(c["p1"] - c["x0"]), em.trainable(fresh_params - base)))
    assert version == 8 and e2 == pytest.approx(want_e2)
    assert (m.rule.switched_at is not None) == (e1 > e2)
    assert m.inversions == 1                                          # τ = 0: no inversion
    assert m.metrics()["gi_switch_checks"] == 1


def test_fresh_updates_pass_through_and_bad_options_fail(client):
    layout = client["layout"]
    m = _gi(layout)
    m.params = client["x0"].clone()
    m.receive(ClientUpdate(client=1, job=0, base_version=0, staleness=2, base=client["x0"], params=client["p1"],
                           num_samples=16, arrival_time=1.0))
    assert m.inversions == 0 and torch.allclose(m.params, client["p1"], atol=1e-6)
    with pytest.raises(UserError, match="rec_fraction"):
        _gi(layout, rec_fraction=0.0)
    ctx = make_context(build, num_clients=1, concurrency=1, num_classes=3, local=LOCAL)
    with pytest.raises(UserError, match="input shape"):
        GISwitch(ctx, torch.zeros(layout.size))


def test_server_state_survives_a_weights_only_checkpoint(client, tmp_path):
    c = client
    m = _gi(c["layout"])
    m.params, m.version = c["x1"].clone(), 7
    m.receive(ClientUpdate(client=0, job=0, base_version=0, staleness=7, base=c["x0"], params=c["p1"],
                           num_samples=16, arrival_time=1.0))
    torch.save(m.server_state(), tmp_path / "s.pt")
    again = _gi(c["layout"])
    again.load_server_state(torch.load(tmp_path / "s.pt", weights_only=True))
    assert torch.equal(again.recovered[0].x, m.recovered[0].x)
    assert again.pending[0][0] == m.pending[0][0] and again.metrics() == m.metrics()
