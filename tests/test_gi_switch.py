"""gi-switch: inversion (label models, box, warm start), the switching rule with its margin
and window, the α blend, the paper's defaults, and the method's bookkeeping."""
import numpy as np
import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.gi_switch import GISwitch, SwitchRule
from asyncfl_bench.methods.gi_switch.emulation import LocalEmulator
from asyncfl_bench.methods.gi_switch.inversion import InversionSettings, Recovered, invert, relative_l1
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.models import MLP
from asyncfl_bench.training.local import LocalTrainer
from conftest import make_context

LOCAL = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0,
         "batch_size": 4, "epochs": 1, "iterations": 0}
# the reference code's client: full batch, no momentum, 5 epochs
FULL_BATCH = {**LOCAL, "batch_size": 1000, "epochs": 5}
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


def _invert(c, emulator, base, params, init, seed, iterations=150, tol=None, **settings):
    s = InversionSettings(iterations, **{"lr": 0.1, "box": None, **settings})
    return invert(emulator, base, emulator.trainable(params - base), init, 16, seed, s, tol=tol)


def _cold(seed, n=8, classes=3, dim=6):
    return Recovered.random(n, (dim,), classes, torch.Generator().manual_seed(seed))


def test_inversion_loss_falls_and_warm_start_needs_fewer_iterations(client):
    em = LocalEmulator(build(), client["layout"], LOCAL)
    first, losses = _invert(client, em, client["x0"], client["p1"], _cold(3), seed=1)
    assert min(losses[-10:]) < 0.35 * losses[0]                   # falls over iterations
    assert np.mean(losses[100:]) < np.mean(losses[:50])
    assert first.seed == 1                                        # tagged with the order it was fitted under
    # the same client's next update, from a newer base: cold vs warm from its previous D_rec
    _, cold = _invert(client, em, client["x1"], client["p2"], _cold(4), seed=2)
    goal = min(cold)
    _, warm = _invert(client, em, client["x1"], client["p2"], first, seed=2, tol=goal)
    assert warm[-1] <= goal
    reach_cold, reach_warm = int(np.argmax(np.array(cold) <= goal)), len(warm) - 1
    assert reach_warm < 0.5 * reach_cold, (reach_warm, reach_cold)


def test_free_label_targets_fit_a_client_update_better_than_soft_cross_entropy():
    """The authors' free targets (BCEWithLogits(log_softmax(z), y), y ∈ R^C) against soft
    labels softmax(y): the same client, the same cold start, the paper's optimiser (sign-Adam
    lr 1, box [−2, 2], ×0.1 at 3/8, 5/8, 7/8) at a small budget."""
    build10 = lambda: MLP(16, 10, hidden=16)
    torch.manual_seed(0)
    layout = Layout.of(build10())
    x0 = layout.flatten(build10())
    g = torch.Generator().manual_seed(10)
    x, y = torch.rand(24, 16, generator=g), torch.randint(0, 10, (24,), generator=g)
    p, _ = LocalTrainer(build10, layout, FULL_BATCH, torch.device("cpu")).train(x0, x, y, seed=1)
    em = LocalEmulator(build10(), layout, FULL_BATCH)
    misfit = {}
    for label_model in ("free", "soft-ce"):
        settings = InversionSettings(150, 1.0, True, (-2.0, 2.0), label_model)
        misfit[label_model] = np.array([
            min(invert(em, x0, em.trainable(p - x0), _cold(start, n=12, classes=10, dim=16), 24, 1, settings)[1])
            for start in range(3)])                                    # the same 3 cold starts for both
    # measured: free 0.270, 0.263, 0.264 against soft-ce 0.382, 0.313, 0.305. This problem
    # is fixed: on other draws of it (model seed, data) the two come closer, some tie
    assert (misfit["free"] < misfit["soft-ce"]).all(), misfit
    assert misfit["free"].mean() < 0.9 * misfit["soft-ce"].mean(), misfit


def test_box_keeps_recovered_inputs_inside_and_bad_settings_fail(client):
    em = LocalEmulator(build(), client["layout"], LOCAL)
    rec, _ = _invert(client, em, client["x0"], client["p1"], _cold(3), seed=1, iterations=20,
                     box=(-0.5, 0.5), lr=1.0)
    assert rec.x.min() >= -0.5 and rec.x.max() <= 0.5
    with pytest.raises(UserError, match="label model"):
        InversionSettings(label_model="hard")
    with pytest.raises(UserError, match="low < high"):
        InversionSettings(box=(1.0, -1.0))
    with pytest.raises(UserError, match="iterations"):
        InversionSettings(iterations=0)


def test_emulated_update_is_differentiable_in_the_data(client):
    em = LocalEmulator(build(), client["layout"], LOCAL)
    rec = _cold(5)
    for label_model in ("free", "soft-ce"):
        x = rec.x.clone().requires_grad_(True)
        y = rec.labels.clone().requires_grad_(True)
        em.delta(client["x0"], x, y, 16, 0, create_graph=True, label_model=label_model).abs().sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0 and y.grad.abs().sum() > 0


def test_paper_rule_switches_exactly_at_the_first_e1_above_e2():
    rule = SwitchRule(blend=10, margin=1.0, window=1)
    seq = [(0.2, 0.9), (0.3, 0.8), (0.5, 0.5), (0.4, 0.6), (0.7, 0.65), (0.1, 0.9)]
    fired = [rule.observe(e1, e2, version=10 * i) for i, (e1, e2) in enumerate(seq)]
    assert fired == [False, False, False, False, True, False]    # E1 = E2 is not worse
    assert rule.switched_at == 40
    assert len(rule.checks) == 5                                   # no measuring after the switch
    never = SwitchRule(blend=10, enabled=False)
    assert not any(never.observe(e1, e2, v) for v, (e1, e2) in enumerate(seq))
    assert never.alpha(10**6) == 1.0


def test_one_noisy_observation_does_not_switch():
    # the estimate is better (E1 < E2) except for one check where it is slightly worse
    seq = [(0.30, 0.50), (0.40, 0.45), (0.55, 0.52), (0.35, 0.50), (0.30, 0.55)]
    paper = SwitchRule(blend=0, margin=1.0, window=1)
    assert [paper.observe(e1, e2, v) for v, (e1, e2) in enumerate(seq)] == [False, False, True, False, False]
    code = SwitchRule(blend=0, margin=0.9, window=1)               # fiexed_dirichlet.py: e2 < 0.9·e1
    assert not any(code.observe(e1, e2, v) for v, (e1, e2) in enumerate(seq))
    # one far-off check: the margin alone fires on it, the default mean over 3 checks does not
    outlier = [(0.30, 0.50), (0.35, 0.50), (0.90, 0.40), (0.30, 0.50), (0.30, 0.45)]
    assert any(SwitchRule(0, margin=0.9, window=1).observe(e1, e2, v) for v, (e1, e2) in enumerate(outlier))
    d = GISwitch.defaults
    averaged = SwitchRule(0, margin=d["switch_margin"], window=d["switch_window"])
    assert not any(averaged.observe(e1, e2, v) for v, (e1, e2) in enumerate(outlier))
    assert averaged.switched_at is None and averaged.alpha(10**6) == 1.0
    # ... but a sustained reversal switches it, at the check that tips the mean
    sustained = SwitchRule(0, margin=0.9, window=3)
    worse = [(0.30, 0.50), (0.60, 0.40), (0.60, 0.40), (0.60, 0.40)]
    assert [sustained.observe(e1, e2, v) for v, (e1, e2) in enumerate(worse)] == [False, False, True, False]
    # no decision before the window is full, however bad the first check
    early = SwitchRule(0, margin=0.9, window=3)
    assert not early.observe(0.9, 0.1, 0) and not early.observe(0.9, 0.1, 1) and early.observe(0.9, 0.1, 2)
    with pytest.raises(UserError, match="switch_window"):
        SwitchRule(0, window=0)
    with pytest.raises(UserError, match="switch_margin"):
        SwitchRule(0, margin=0.0)


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
    return GISwitch(ctx, torch.zeros(layout.size), **{"iterations": 30, "gi_lr": 0.1, "min_staleness": 3,
                                                       "switch_margin": 1.0, "switch_window": 1,
                                                       "aggregation": "fedasync", "alpha": 1.0, **hp})


def test_defaults_are_the_papers():
    d = GISwitch.defaults
    assert (d["iterations"], d["gi_lr"], d["signed"], d["boxed"], d["box_low"], d["box_high"]) == \
        (15000, 1.0, True, True, -2.0, 2.0)                            # Table 1
    assert d["rec_fraction"] == 0.5 and d["rec_max"] == 0 and d["label_model"] == "free"
    assert d["warm_start"] and (d["switch_margin"], d["switch_window"]) == (0.9, 3)
    s = InversionSettings()
    assert (s.iterations, s.lr, s.signed, s.box, s.label_model) == (15000, 1.0, True, (-2.0, 2.0), "free")


def test_method_inverts_stale_updates_and_measures_e1_e2_on_the_next(client):
    c, layout = client, client["layout"]
    m = _gi(layout)
    m.params, m.version = c["x1"].clone(), 7
    stale = ClientUpdate(client=0, job=0, base_version=0, staleness=7, base=c["x0"], params=c["p1"],
                         num_samples=16, arrival_time=1.0, job_seed=1)   # p1 trained under seed 1
    m.receive(stale)
    assert m.inversions == 1 and m.inversion_seconds > 0 and 0 in m.recovered
    assert m.recovered[0].seed == 1                                    # fitted under the job's own seed
    assert len(m.recovered[0].x) == 8                                  # ½|D_i|, no cap by default
    assert m.recovered[0].x.abs().max() <= 2.0                         # boxed
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
    want_e1 = float(relative_l1(m._emulate(base, m.recovered[0], 16), em.trainable(fresh_params - base)))
    assert version == 8 and e2 == pytest.approx(want_e2) and e1 == pytest.approx(want_e1)
    assert (m.rule.switched_at is not None) == (e1 > e2)
    assert m.inversions == 1                                          # τ = 0: no inversion
    assert m.metrics()["gi_switch_checks"] == 1


def test_rec_max_caps_and_warm_start_can_be_turned_off(client):
    c = client
    stale = ClientUpdate(client=0, job=0, base_version=0, staleness=7, base=c["x0"], params=c["p1"],
                         num_samples=16, arrival_time=1.0, job_seed=1)
    warm = _gi(c["layout"], rec_max=3)
    warm.params, warm.version = c["x1"].clone(), 7
    warm.receive(stale)
    assert len(warm.recovered[0].x) == 3                               # the cap
    assert warm._init(0, 16) is warm.recovered[0]                      # warm start: the client's last D_rec
    capped = _gi(c["layout"], rec_max=3, warm_start=False)
    capped.params, capped.version = c["x1"].clone(), 7
    capped.receive(stale)
    first = capped.recovered[0].x.clone()
    key = int(np.random.SeedSequence([0, 0, 0x61]).generate_state(1)[0])
    cold = Recovered.random(3, (6,), 3, torch.Generator().manual_seed(key), box=(-2.0, 2.0))
    assert torch.equal(capped._init(0, 16).x, cold.x)                  # a cold start again, not the last D_rec
    assert not torch.equal(capped._init(0, 16).x, first)
    assert _gi(c["layout"]).rec_size(16) == 8 and _gi(c["layout"], rec_max=0).rec_size(1000) == 500


def test_fresh_updates_pass_through_and_bad_options_fail(client):
    layout = client["layout"]
    m = _gi(layout)
    m.params = client["x0"].clone()
    m.receive(ClientUpdate(client=1, job=0, base_version=0, staleness=2, base=client["x0"], params=client["p1"],
                           num_samples=16, arrival_time=1.0))
    assert m.inversions == 0 and torch.allclose(m.params, client["p1"], atol=1e-6)
    with pytest.raises(UserError, match="rec_fraction"):
        _gi(layout, rec_fraction=0.0)
    with pytest.raises(UserError, match="rec_max"):
        _gi(layout, rec_max=-1)
    with pytest.raises(UserError, match="label model"):
        _gi(layout, label_model="hard")
    with pytest.raises(UserError, match="switch_window"):
        _gi(layout, switch_window=0)
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
    assert torch.equal(again.recovered[0].x, m.recovered[0].x) and torch.equal(again.recovered[0].labels,
                                                                              m.recovered[0].labels)
    assert again.recovered[0].seed == m.recovered[0].seed
    assert again.pending[0][0] == m.pending[0][0] and again.metrics() == m.metrics()


@pytest.mark.parametrize("task_name", ["digits", "femnist"])
def test_cpu_presets_cut_the_budget_and_set_a_rate_for_it(task_name):
    """The intertwined presets run 50 iterations (Table 1: 15,000): at that budget lr 1
    leaves the fit far worse than lr 0.1, so they set 0.1; the paper's soft labels replace
    the code's free targets, whose replay from x_t ran away; the rest stays Table 1's."""
    from asyncfl_bench.config.registry import get_method, get_task, methods
    from asyncfl_bench.config.settings import resolve

    for preset in ("intertwined", "intertwined-slow"):
        hp = resolve(get_task(task_name), preset, get_method("gi-switch"), 0, "cpu", {},
                     list(methods()))["method_params"]
        assert (hp["iterations"], hp["rec_max"], hp["gi_lr"]) == (50, 24, 0.1)
        assert (hp["label_model"], hp["boxed"], hp["signed"], hp["switch_margin"]) == ("soft-ce", True, True, 0.9)


def _invert_with_torch_optim(emulator, base, target, init, seed, s):
    """The inversion loop as torch.optim writes it: Adam and MultiStepLR (made before
    the loop, stepped after each iteration), signed gradients; its loss per iteration."""
    x = init.x.detach().clone().requires_grad_(True)
    y = init.labels.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([x, y], lr=s.lr)
    miles = [int(s.iterations * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=miles, gamma=0.1)
    losses = []
    for _ in range(s.iterations):
        opt.zero_grad()
        loss = relative_l1(emulator.delta(base, x, y, 16, seed, create_graph=True, label_model=s.label_model), target)
        loss.backward()
        losses.append(float(loss.detach()))
        if s.signed:
            x.grad.sign_()
        opt.step()
        sched.step()
    return losses


@pytest.mark.parametrize("iterations", [2, 16])   # 2: a milestone at 0, applied when the schedule is made
def test_inversion_steps_as_torch_optims_adam_and_multisteplr(client, iterations):
    em = LocalEmulator(build(), client["layout"], LOCAL)
    s = InversionSettings(iterations, lr=0.1, box=None)
    target = em.trainable(client["p1"] - client["x0"])
    _, got = invert(em, client["x0"], target, _cold(3), 16, 1, s)
    assert got == _invert_with_torch_optim(em, client["x0"], target, _cold(3), 1, s)
