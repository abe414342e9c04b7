"""The shared distillation parts: each mechanism checked on a constructed case."""
import math

import pytest
import torch
from torch import nn

from asyncfl_bench.methods.fedrevive.beta import make_beta
from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.distill.feature_stats import (BatchStats, record_running_stats, stats_matching_loss, tracked_layers)
from asyncfl_bench.methods.distill.generator import FeatureGenerator, ImageGenerator, diversity_loss
from asyncfl_bench.methods.distill.kd import distill, mean_kl
from asyncfl_bench.methods.distill.synthesis import GeneratorSource, SyntheticPool, Synthesiser, augment
from asyncfl_bench.methods.distill.teachers import (ProxyEstimator, TeacherBuffer, Teacher, probe_class_proportions, teacher_weights)
from asyncfl_bench.tasks.models import MLP, SmallCNN


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# -- β(τ) ------------------------------------------------------------------------
def test_cosine_beta_values_at_0_smax_2smax():
    beta = make_beta("cosine:s_max=75")
    assert beta(0) == 0.0
    assert beta(75) == pytest.approx(0.5)
    assert beta(150) == pytest.approx(1.0)
    assert beta(400) == 1.0
    assert 0 < beta(30) < beta(60) < 0.5 < beta(100) < 1      # monotone in between
    assert beta(37.5) == pytest.approx(1 - 0.5 * (1 + math.cos(math.pi / 4)))


def test_beta_alternatives_and_errors():
    assert make_beta("fixed:0.5")(0) == 0.5 and make_beta("fixed:value=1.0")(99) == 1.0
    assert make_beta("linear:gamma=0.1")(5) == pytest.approx(0.5)
    assert make_beta("linear:gamma=0.1")(50) == 1.0
    assert make_beta("exponential:lam=0.1")(10) == pytest.approx(1 - math.exp(-1))
    step = make_beta("step:base=8")
    assert [step(t) for t in (0, 2, 4, 6, 8)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    for bad in ("cosinus", "fixed:2", "cosine:s_max=0", "cosine:smax=3", "fixed:abc"):
        with pytest.raises(UserError):
            make_beta(bad)


# -- feature statistics -----------------------------------------------------------
def test_tracked_layers_convs_or_hidden_linears():
    assert all(isinstance(m, nn.Conv2d) for m in tracked_layers(SmallCNN(1, 8, 10)))
    assert len(tracked_layers(SmallCNN(1, 8, 10))) == 2
    mlp = tracked_layers(MLP(64, 10))
    assert len(mlp) == 1 and mlp[0].out_features == 64       # the classifier is not tracked


def test_running_stats_match_the_data_the_model_saw():
    torch.manual_seed(0)
    model = SmallCNN(1, 8, 10)
    record = {}
    data = torch.rand(6, 32, 1, 8, 8) * 3 + 2                 # mean 3.5, far from N(0,1)
    for xb in data:
        model(xb)
        record_running_stats(record, model, momentum=0.5)
    assert record["steps"] == len(data) - 1                   # first forward preceded the hooks
    with BatchStats(model) as bs:
        model(data[1:].flatten(0, 1))
    far = [(m + 5, v * 4) for m, v in bs.stats]
    close = stats_matching_loss(bs.stats, record["stats"])
    assert close < 0.5 * stats_matching_loss(far, record["stats"])


def test_batch_stats_are_differentiable_wrt_inputs():
    model = SmallCNN(1, 8, 10).requires_grad_(False)
    x = torch.rand(16, 1, 8, 8, requires_grad=True)
    target = [(torch.zeros_like(m), torch.ones_like(v)) for m, v in
              [(torch.zeros(16), None), (torch.zeros(32), None)] for v in [torch.ones(m.shape)]]
    with BatchStats(model) as bs:
        model(x)
    stats_matching_loss(bs.stats, target).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


# -- generators -------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (1, 10, 10)])
def test_image_generator_makes_the_task_shape_in_unit_range(shape):
    g = ImageGenerator(shape, nz=16, ngf=8)
    x = g(torch.randn(4, 16), torch.tensor([0, 1, 2, 0]), torch.randn(3, 16))
    assert x.shape == (4, *shape) and x.min() >= 0 and x.max() <= 1


def test_feature_generator_and_diversity_loss():
    g = FeatureGenerator(10, latent=32, hidden=64, noise=8)
    z, eps = g(torch.arange(10), gen())
    assert z.shape == (10, 32) and eps.shape == (10, 8)
    same = diversity_loss(eps, torch.zeros_like(z))
    spread = diversity_loss(eps, torch.randn(10, 32))
    assert same == pytest.approx(1.0) and spread < same        # identical outputs are penalised most


# -- teachers -----------------------------------------------------------------------
def biased_teacher(classes, num_classes=10, strength=6.0):
    """A linear classifier whose bias favours ``classes``, whatever the input."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
    with torch.no_grad():
        model[1].weight.normal_(0, 0.05, generator=gen(1))
        model[1].bias.zero_()
        model[1].bias[list(classes)] = strength
    return model


def test_noise_probes_recover_a_teachers_dominant_classes():
    q = probe_class_proportions(biased_teacher([2, 7]), torch.randn(64, 1, 8, 8, generator=gen()), temperature=0.8)
    assert q.sum() == pytest.approx(1.0)
    assert set(q.topk(2).indices.tolist()) == {2, 7}
    assert q[[2, 7]].sum() > 0.9


def test_proxy_averages_first_uploads_then_freezes():
    est = ProxyEstimator(uploads=2)
    a, b, c = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])
    est.add(3, a)
    assert est.needs_probe(3)
    assert torch.allclose(est.add(3, b), torch.tensor([0.5, 0.5]))
    assert not est.needs_probe(3)
    assert torch.allclose(est.get(3), torch.tensor([0.5, 0.5]))
    del c


def test_teacher_weights_share_each_class():
    q = torch.tensor([[0.8, 0.2, 0.0], [0.2, 0.2, 0.0]])
    w = teacher_weights(q)
    assert torch.allclose(w[:, 0], torch.tensor([0.8, 0.2]))
    assert torch.allclose(w[:, 1], torch.tensor([0.5, 0.5]))
    assert torch.all(w[:, 2] == 0)                            # nobody knows class 2


def test_teacher_buffer_keeps_the_c_most_recent_and_updates_proxies():
    buf = TeacherBuffer(3)
    for c in range(5):
        buf.add(Teacher(c, torch.zeros(2), [], torch.tensor([1.0, 0.0])))
    assert [t.client for t in buf] == [4, 3, 2]
    buf.set_q(3, torch.tensor([0.0, 1.0]))
    assert buf.q_matrix()[1].tolist() == [0.0, 1.0]


# -- pool and sampling ----------------------------------------------------------------
def test_pool_is_fifo_and_bounded():
    pool = SyntheticPool(5)
    pool.add(torch.arange(4.0)[:, None], torch.zeros(4, dtype=torch.long))
    pool.add(torch.arange(4.0, 8.0)[:, None], torch.ones(4, dtype=torch.long))
    assert len(pool) == 5 and pool.x.flatten().tolist() == [3, 4, 5, 6, 7]


def test_class_weighted_sampling_follows_the_distribution():
    pool = SyntheticPool(1000)
    pool.add(torch.randn(300, 2), torch.arange(300) % 3)
    dist = torch.tensor([0.7, 0.3, 0.0])
    _, y = pool.sample(dist, 4000, gen())
    freq = torch.bincount(y, minlength=3).float() / 4000
    assert torch.allclose(freq, dist, atol=0.03)
    assert freq[2] == 0


def test_augment_keeps_shape_and_gradient():
    x = torch.rand(5, 1, 8, 8, requires_grad=True)
    out = augment(x, 1, True, gen())
    assert out.shape == x.shape
    out.sum().backward()
    assert x.grad.sum() == pytest.approx(out.numel(), rel=0.3)   # a crop moves pixels, keeps most
    assert torch.equal(augment(x, 0, False, gen()), x)


# -- meta-learned synthesis ------------------------------------------------------------
def make_synth(lr_g=0.05, steps=3, meta_steps=1):
    torch.manual_seed(0)
    g = ImageGenerator((1, 8, 8), nz=16, ngf=8)
    rng = gen()
    return Synthesiser(GeneratorSource(g, 10, rng, lr_g=lr_g, lr_z=0.01), SyntheticPool(100), rng,
                       steps=steps, batch=16, w_bn=0.0, aug_pad=0, aug_flip=False)


def test_reptile_moves_the_slow_generator_toward_the_fast_one_by_its_step():
    """Reptile feeds θ − θ_fast to Adam: on its first step Adam moves every parameter by
    lr_g·sign(θ_fast − θ) (bias-corrected m/√v = ±1), i.e. toward the fast copy."""
    s = make_synth(lr_g=0.01)
    before = [p.detach().clone() for p in s.source.generator.parameters()]
    captured = {}
    real_step = s.source.meta_opt.step

    def spy():
        captured["grads"] = [p.grad.clone() for p in s.source.generator.parameters()]
        real_step()
    s.source.meta_opt.step = spy
    s.synthesize([biased_teacher([1])], [[]], torch.full((1, 10), 0.1), biased_teacher([0]), adversarial=False)
    moved = 0
    for p0, p1, gr in zip(before, s.source.generator.parameters(), captured["grads"]):
        mask = gr.abs() > 1e-6
        fast = p0 - gr                                             # θ_fast = θ − (θ − θ_fast)
        step = (p1.detach() - p0)[mask]
        assert torch.allclose(step, 0.01 * torch.sign(fast - p0)[mask], atol=1e-4)
        moved += int(mask.sum())
    assert moved > 100
    assert len(s.pool) == 16


def test_synthesis_lowers_teacher_cross_entropy_over_rounds():
    """The meta-learned generator gets better at making inputs the teacher labels as asked."""
    s = make_synth(lr_g=0.05, steps=2)
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).requires_grad_(False)
    with torch.no_grad():
        teacher[1].weight.normal_(0, 1, generator=gen(2))
    q = torch.full((1, 10), 0.1)
    first = s.synthesize([teacher], [[]], q, teacher, adversarial=False)["ce"]
    for _ in range(8):
        last = s.synthesize([teacher], [[]], q, teacher, adversarial=False)["ce"]
    assert last < 0.7 * first


# -- distillation ------------------------------------------------------------------------
def test_distillation_reduces_student_teacher_kl_on_the_pool():
    torch.manual_seed(0)
    teachers = [SmallCNN(1, 8, 10).requires_grad_(False) for _ in range(2)]
    student = SmallCNN(1, 8, 10)
    pool = SyntheticPool(500)
    pool.add(torch.rand(200, 1, 8, 8), torch.arange(200) % 10)
    q = torch.full((2, 10), 0.1)
    before = mean_kl(student, teachers, pool.x)
    losses = distill(student, teachers, q, pool, gen(), steps=30, batch=32, lr=3e-3)
    after = mean_kl(student, teachers, pool.x)
    assert after < 0.5 * before
    assert losses[-1] < losses[0]


def test_each_teacher_distils_on_pool_samples_drawn_by_its_own_class_proportions():
    torch.manual_seed(0)
    teachers = [biased_teacher([1]), biased_teacher([8])]
    pool = SyntheticPool(500)
    pool.add(torch.rand(300, 1, 8, 8), torch.arange(300) % 10)
    q = torch.zeros(2, 10)
    q[0, :3], q[1, 7:] = 1 / 3, 1 / 3
    seen = {0: [], 1: []}
    real = pool.sample

    def spy(dist, n, rng):
        x, y = real(dist, n, rng)
        seen[int(dist.argmax() >= 7)].append(y)
        return x, y
    pool.sample = spy
    distill(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), teachers, q, pool, gen(), steps=3, batch=20)
    assert set(torch.cat(seen[0]).tolist()) <= {0, 1, 2}
    assert set(torch.cat(seen[1]).tolist()) <= {7, 8, 9}


def test_one_student_forward_over_all_teachers_equals_one_per_teacher():
    """The joint path (a BatchNorm-free student) draws the same batches and reaches the same
    losses and student as one forward per teacher, up to float summation order; a student
    with BatchNorm keeps the per-teacher path, whose batch statistics are per teacher. In
    float64, so that rounding cannot flip Adam's step on a near-zero gradient."""
    from asyncfl_bench.methods.distill.kd import batch_independent
    torch.manual_seed(0)
    pool = SyntheticPool(64)
    pool.add(torch.randn(64, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (64,)))
    teachers = [SmallCNN(1, 8, 10).double().eval() for _ in range(3)]
    q = torch.rand(3, 10) + 0.1
    runs = {}
    for joint in (False, True):
        torch.manual_seed(1)
        student = SmallCNN(1, 8, 10).double()
        rng = torch.Generator().manual_seed(2)
        losses = distill(student, teachers, q, pool, rng, steps=4, batch=8, lr=1e-2, joint=joint)
        runs[joint] = (losses, torch.cat([p.detach().flatten() for p in student.parameters()]), rng.get_state())
    (l0, p0, r0), (l1, p1, r1) = runs[False], runs[True]
    assert torch.equal(r0, r1)                                   # the same draws
    assert l0[0] != l0[-1] and max(abs(a - b) for a, b in zip(l0, l1)) < 1e-12
    torch.manual_seed(1)
    start = torch.cat([p.detach().flatten() for p in SmallCNN(1, 8, 10).double().parameters()])
    assert (p0 - p1).abs().max() < 1e-10 and (p0 - start).abs().max() > 1e-3   # it trained
    assert batch_independent(SmallCNN(1, 8, 10)) and batch_independent(MLP(64, 10))
    assert not batch_independent(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    assert not batch_independent(nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1)))


def test_batch_stats_variance_is_torchs_up_to_rounding():
    """The two-pass variance equals torch's biased variance (float64: 1e-12), gradients too,
    for conv activations and (tokens, width) rows alike."""
    from asyncfl_bench.methods.distill.feature_stats import batch_stats

    g = torch.Generator().manual_seed(0)
    for shape in ((6, 4, 5, 5), (9, 7)):
        x = (3 + 2 * torch.randn(shape, generator=g, dtype=torch.float64)).requires_grad_()
        dims = [d for d in range(x.dim()) if d != 1]
        mean, var = batch_stats(x)
        ref_var = x.var(dim=dims, unbiased=False)
        assert torch.allclose(mean, x.mean(dim=dims), rtol=0, atol=1e-12)
        assert torch.allclose(var, ref_var, rtol=0, atol=1e-12)
        w = torch.randn(var.shape, generator=g, dtype=torch.float64)
        grad, = torch.autograd.grad((w * var).sum() + mean.sum(), x)
        ref, = torch.autograd.grad((w * ref_var).sum() + x.mean(dim=dims).sum(), x)
        assert torch.allclose(grad, ref, rtol=0, atol=1e-12)


# -- the faster paths equal the straightforward ones -------------------------------------
def test_reused_fast_generator_copy_equals_a_fresh_deep_copy_per_synthesis():
    """One fast copy reset from the slow generator (weights, BatchNorm statistics, mode)
    gives bit for bit the pool and slow generator that a deep copy per synthesis gives."""
    teacher = SmallCNN(1, 8, 10).requires_grad_(False)
    q = torch.full((1, 10), 0.1)
    runs = []
    for fresh in (False, True):
        torch.manual_seed(0)
        s = make_synth(lr_g=0.05, steps=2)
        for _ in range(3):
            if fresh:
                s.source._fast_copy = None        # the straightforward path: a new deep copy
            s.synthesize([teacher], [[]], q, teacher, adversarial=False)
        runs.append((s.pool.x.clone(), [t.clone() for t in s.source.generator.state_dict().values()]))
    (x0, g0), (x1, g1) = runs
    assert len(x0) == 3 * 16 and torch.equal(x0, x1)
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))
    assert not torch.equal(x0[:16], x0[16:32])   # the generator moved between syntheses


def test_pool_sampling_with_its_label_index_draws_what_a_scan_draws():
    """The pool's label index (rebuilt after every add) picks the same items from the same
    draws as scanning the labels on every call."""
    from asyncfl_bench.methods.distill.synthesis import items_with_labels
    pool = SyntheticPool(50)
    pool.add(torch.randn(40, 2), torch.arange(40) % 4)
    dist = torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0, 0.0])
    for round_ in range(2):
        rng_a, rng_b = gen(round_), gen(round_)
        _, y = pool.sample(dist, 200, rng_a)
        labels = torch.multinomial(dist, 200, replacement=True, generator=rng_b)
        assert torch.equal(y, pool.y[items_with_labels(pool.y, labels, rng_b)])
        pool.add(torch.randn(30, 2), torch.full((30,), 5))   # the index must follow the new items
    _, y = pool.sample(torch.tensor([0, 0, 0, 0, 0, 1.0]), 10, gen())
    assert (y == 5).all()
