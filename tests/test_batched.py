import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from asyncfl_bench.training.batched import TOLERANCE, BatchedTrainer, unsupported_reason
from asyncfl_bench.training.path import BatchClients, choose_path
from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.augment import CropFlip
from asyncfl_bench.tasks.digits import Digits
from asyncfl_bench.tasks.models import MLP, FemnistCNN, ImageCNN, ResNet18, SmallCNN
from asyncfl_bench.training.local import LocalTrainer

from conftest import tiny_config

SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3, "batch_size": 8, "epochs": 2,
       "iterations": 0}
# epochs, so jobs differ in step count and the stack shrinks under Adam's fused step too
ADAM = {"optimizer": "adam", "lr": 1e-2, "momentum": 0.0, "weight_decay": 1e-3, "batch_size": 8, "epochs": 2,
        "iterations": 0}
CPU = torch.device("cpu")
SIZES = (19, 5, 8)   # a short last batch, fewer samples than a batch, an exact batch: unequal step counts

MODELS = {
    "digits_cnn": (lambda: SmallCNN(1, 8, 10), (1, 8, 8), torch.float32),
    "mlp": (lambda: MLP(64, 10), (1, 8, 8), torch.float32),
    "femnist_cnn": (lambda: FemnistCNN(10), (1, 28, 28), torch.uint8),
    "image_cnn": (lambda: ImageCNN(3, 8, 10, [0.5] * 3, [0.25] * 3, width=4, hidden=8), (3, 8, 8), torch.uint8),
    "resnet_group": (lambda: ResNet18(10, [0.5] * 3, [0.25] * 3, norm="group", width=4), (3, 8, 8), torch.uint8),
}


def _data(shape, dtype, n=40):
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8) if dtype == torch.uint8
         else torch.rand((n, *shape), generator=g))
    y = torch.randint(0, 10, (n,), generator=g)
    perm = torch.randperm(n, generator=g)
    clients, start = [], 0
    for s in SIZES:
        clients.append(perm[start:start + s])
        start += s
    return x, y, clients


# float64: the same arithmetic leaves only float64 rounding (measured ≤ 1e-13 on the update);
# the mean loss is accumulated in a float32 scalar by both trainers
EXACT = {"update": 1e-10, "loss": 1e-6}
# share of a run's float32 jobs that must lie within the tight bound (TOLERANCE[...]["update"])
TYPICAL_SHARE = 0.9


def _at(build, precision):
    return lambda: build().to(precision)


def _compare(build, shape, dtype, local, augment=None, tolerance=None, precision=torch.float32):
    tolerance = tolerance or TOLERANCE[local["optimizer"]]
    torch.manual_seed(0)
    model = build()
    layout = Layout.of(model)
    base = layout.flatten(model).clone()
    bases = [b.to(precision) for b in (base, base + 0.01 * torch.randn_like(base), base)]   # two base versions
    x, y, clients = _data(shape, dtype)
    if precision != torch.float32:   # Standardize takes float images as already in [0, 1]
        x = x.to(precision) / 255 if dtype == torch.uint8 else x.to(precision)
        build = _at(build, precision)
    seeds = [11, 22, 33]
    seq = LocalTrainer(build, layout, local, CPU, augment)
    expected = [seq.train(b, x[c], y[c], s) for b, c, s in zip(bases, clients, seeds)]
    got = BatchedTrainer(build, layout, local, CPU, augment).train_many(bases, x, y, clients, seeds)
    for (p_seq, l_seq), (p_bat, l_bat), b in zip(expected, got, bases):
        assert not torch.equal(p_seq, b) and p_bat.dtype == precision    # it trained, at that precision
        err = float((p_bat - p_seq).norm() / (p_seq - b).norm())
        assert err <= tolerance["update"], err
        assert l_bat == pytest.approx(l_seq, rel=tolerance["loss"])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("local", [SGD, ADAM], ids=["sgd", "adam"])
def test_batched_equals_sequential_within_tolerance(name, local):
    build, shape, dtype = MODELS[name]
    assert unsupported_reason(build(), Layout.of(build())) is None
    _compare(build, shape, dtype, local)


@pytest.mark.parametrize("name,local", [("femnist_cnn", ADAM), ("digits_cnn", ADAM), ("digits_cnn", SGD)],
                         ids=["adam-femnist_cnn", "adam-digits_cnn", "sgd-digits_cnn"])
def test_batched_is_the_same_arithmetic_in_float64(name, local):
    # float32 Adam's wide TOLERANCE is rounding amplified by Adam; without the rounding, the
    # two paths must agree to float64 precision (batches, masks, optimiser step and all)
    build, shape, dtype = MODELS[name]
    _compare(build, shape, dtype, local, tolerance=EXACT, precision=torch.float64)


def test_batched_draws_the_same_augmentation_as_sequential():
    build, shape, dtype = MODELS["image_cnn"]
    _compare(build, shape, dtype, SGD, augment=CropFlip(pad=2))


@pytest.mark.parametrize("build,layer", [
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.Linear(8, 10)), "BatchNorm1d"),
    (lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Dropout(0.5), nn.Linear(8, 10)), "Dropout"),
    (lambda: ResNet18(10, [0.5] * 3, [0.25] * 3, norm="none", width=4), "running_mean"),
])
def test_unsupported_layers_fall_back_to_sequential(build, layer):
    model = build()
    path = choose_path(BatchClients.parse("8"), model, Layout.of(model), SGD, CPU, 8, torch.zeros(1, 1, 8, 8))
    assert path.group == 0 and path.describe() == "sequential"
    assert path.reason.startswith("fallback:") and layer in path.reason


class DigitsWithBatchNorm(Digits):
    def model_builder(self, setup, data):
        return lambda: nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(256, 10))


def _run(tmp, cfg, task=None, batch_clients="auto"):
    task = task or Digits()
    data = task.load(cfg["setup"], cfg["seed"])
    summary, _ = execute(cfg, task, data, RunOptions(tmp, batch_clients=BatchClients.parse(batch_clients)))
    folder = tmp / cfg["task"] / cfg["method"] / summary["run_id"]
    return pd.read_csv(folder / "curve.csv"), json.loads((folder / "summary.json").read_text())


def test_a_run_with_an_unsupported_layer_records_the_fallback(tmp_path):
    _, summary = _run(tmp_path, tiny_config("fedbuff"), DigitsWithBatchNorm(), batch_clients="4")
    t = summary["training"]
    assert summary["training_path"] == "sequential" and "BatchNorm2d" in t["reason"]
    assert t["batched_jobs"] == 0 and t["sequential_jobs"] == summary["arrivals"]


@pytest.mark.parametrize("threads", [1, 2])
def test_batched_run_trains_every_job_as_sequential_would(tmp_path, monkeypatch, threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _check_batched_run(tmp_path, monkeypatch)
    finally:
        torch.set_num_threads(before)


def _check_batched_run(tmp_path, monkeypatch):
    cfg = tiny_config("fedasync")
    seq, s_seq = _run(tmp_path / "a", cfg, batch_clients="off")
    layout = Layout.of(SmallCNN(1, 8, 10))
    local = cfg["setup"]["local"]
    reference = LocalTrainer(lambda: SmallCNN(1, 8, 10), layout, local, CPU)
    train_many, jobs = BatchedTrainer.train_many, []

    def checked(self, bases, x, y, clients, seeds, records=None, terms=None):   # each group's jobs redone one by one
        out = train_many(self, bases, x, y, clients, seeds, records, terms)
        for i, (b, c, s, (p, _)) in enumerate(zip(bases, clients, seeds, out)):
            p_seq, _ = reference.train(b, x[c], y[c], s)
            error = float((p - p_seq).norm() / (p_seq - b).norm())
            jobs.append((error, bases, x, y, clients, seeds, i))
        return out

    monkeypatch.setattr(BatchedTrainer, "train_many", checked)
    bat, s_bat = _run(tmp_path / "b", cfg, batch_clients="4")
    assert s_seq["training_path"] == "sequential" and s_bat["training_path"] == "batched(N=4)"
    t = s_bat["training"]
    assert t["batched_jobs"] > t["sequential_jobs"] and t["groups"] < t["batched_jobs"]   # real groups
    errors = [j[0] for j in jobs]
    bound = TOLERANCE[local["optimizer"]]
    assert len(errors) == t["batched_jobs"]
    # float32: nearly every job within the tight bound; a job whose ReLU gate flips with the
    # summation order may move further, but never past the loose one (see TOLERANCE)
    assert max(errors) <= bound["worst"], max(errors)
    assert sum(e <= bound["update"] for e in errors) >= TYPICAL_SHARE * len(errors), sorted(errors)[-5:]
    # the worst job is the same arithmetic: in float64 its group trains exactly as sequential
    _, bases, x, y, clients, seeds, i = max(jobs, key=lambda j: j[0])
    build64 = _at(lambda: SmallCNN(1, 8, 10), torch.float64)
    b64, x64 = [b.double() for b in bases], x.double()
    p64 = train_many(BatchedTrainer(build64, layout, local, CPU), b64, x64, y, clients, seeds)[i][0]   # unpatched
    p64_seq, _ = LocalTrainer(build64, layout, local, CPU).train(b64[i], x64[clients[i]], y[clients[i]], seeds[i])
    assert float((p64 - p64_seq).norm() / (p64_seq - b64[i]).norm()) <= EXACT["update"]
    # whole runs drift apart only by the amplified rounding differences (early training is chaotic)
    np.testing.assert_allclose(bat["loss"], seq["loss"], rtol=2e-2)


def test_regularized_jobs_train_sequentially(tmp_path, monkeypatch):
    from asyncfl_bench.methods.fedasync import FedAsync

    calls = []

    def regularizer(model, x, y, logits):
        calls.append(len(y))
        return 0.0 * logits.sum()

    monkeypatch.setattr(FedAsync, "client_regularizer", lambda self, payload: regularizer)
    _, summary = _run(tmp_path, tiny_config("fedasync"), batch_clients="4")
    t = summary["training"]
    assert t["batched_jobs"] == 0 and t["regularized_jobs"] == t["sequential_jobs"] == summary["arrivals"]
    assert summary["training_path"] == "sequential (fallback: client regularizer)"
    assert calls   # the closure really ran inside local training


def test_batch_clients_spec_is_checked():
    assert BatchClients.parse(" AUTO ") == BatchClients("auto") and BatchClients.parse("16") == BatchClients("fixed", 16)
    assert str(BatchClients.parse("16")) == "16" and BatchClients.parse(BatchClients("off")).mode == "off"
    for bad in ("0", "-2", "many", ""):
        with pytest.raises(UserError, match="--batch-clients"):
            BatchClients.parse(bad)


def test_auto_rule_batches_tiny_models_on_cpu_and_all_jobs_on_gpu():
    small, big = SmallCNN(1, 8, 10), FemnistCNN(62)
    local = dict(SGD, batch_size=32)
    assert choose_path(BatchClients("auto"), small, Layout.of(small), local, CPU, 10, torch.zeros(1, 1, 8, 8)).group == 10
    assert choose_path(BatchClients("auto"), big, Layout.of(big), local, CPU, 10, torch.zeros(1, 1, 28, 28)).group == 0
    assert choose_path(BatchClients("auto"), big, Layout.of(big), local, torch.device("cuda"), 10,
                       torch.zeros(1, 1, 28, 28)).group == 10
    assert choose_path(BatchClients("off"), small, Layout.of(small), local, CPU, 10, torch.zeros(1, 1, 8, 8)).group == 0


def test_auto_rule_bound_depends_on_the_thread_count():
    # 10.8 MFLOP per forward batch (the digits ci CNN at batch 16) batches at any thread
    # count; 21.6 MFLOP (batch 32, about the femnist ci CNN's 22.9) only from 2 threads on
    model, x = SmallCNN(1, 8, 10), torch.zeros(1, 1, 8, 8)
    for batch_size, want in [(16, {1: 10, 2: 10, 4: 10}), (32, {1: 0, 2: 10, 4: 10})]:
        for threads, group in want.items():
            path = choose_path(BatchClients("auto"), model, Layout.of(model), dict(SGD, batch_size=batch_size),
                               CPU, 10, x, threads=threads)
            assert path.group == group and f"at {threads} thread" in path.reason, (threads, path.reason)


def test_cli_rejects_a_bad_batch_clients_before_running(tmp_path):
    from typer.testing import CliRunner

    from asyncfl_bench.cli import app

    res = CliRunner().invoke(app, ["run", "--method", "fedbuff", "--batch-clients", "lots",
                                   "--results", str(tmp_path / "r")])
    assert res.exit_code == 2 and "--batch-clients 'lots'" in res.output
    assert not (tmp_path / "r").exists()


def _flop_counter(model, x):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops()


def test_the_batching_rule_counts_flops_as_the_flop_counter_without_tracing():
    """``forward_flops`` counts every model the tasks build as torch's FLOP counter does
    (convolutions, grouped ones included, and linear layers from their output shapes);
    a model with attention goes through the counter itself."""
    from torch import nn

    from asyncfl_bench.tasks.models import MLP, FemnistCNN, ImageCNN, ResNet18, SmallCNN, TextClassifier
    from asyncfl_bench.training.path import forward_flops
    torch.manual_seed(0)
    mean, std = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
    cases = [(SmallCNN(1, 8, 10), torch.rand(1, 1, 8, 8)), (SmallCNN(1, 28, 62), torch.rand(1, 1, 28, 28)),
             (MLP(64, 10), torch.rand(1, 64)), (FemnistCNN(62), torch.rand(1, 1, 28, 28)),
             (ImageCNN(3, 32, 10, mean, std), torch.rand(1, 3, 32, 32)),
             (nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8 * 6 * 6, 3)), torch.rand(1, 4, 8, 8)),
             (nn.Conv1d(3, 5, 4, stride=2), torch.rand(2, 3, 20))]
    cases += [(ResNet18(10, mean, std, norm=norm, width=8), torch.rand(1, 3, 32, 32)) for norm in ("batch", "group", "none")]
    for model, x in cases:
        model.eval()
        assert forward_flops(model, x) == _flop_counter(model, x) > 0, type(model).__name__
    text = TextClassifier(torch.randn(50, 16), 4, 0, 12, heads=2).eval()
    ids = torch.randint(1, 50, (1, 12))
    assert forward_flops(text, ids) == _flop_counter(text, ids) > 0


@pytest.mark.parametrize("name", ["digits_cnn", "mlp", "image_cnn"])
@pytest.mark.parametrize("precision,bound", [(torch.float64, 1e-10), (torch.float32, 1e-4)], ids=["f64", "f32"])
def test_batched_step_records_the_feature_statistics_the_sequential_recorder_does(name, precision, bound):
    """Jobs whose clients record feature statistics (FedRevive's trackers): the batched step
    folds each job's per-layer statistics over its real samples only (short last batches are
    padded) into the same running averages as the sequential regulariser, step for step."""
    from asyncfl_bench.methods.distill.feature_stats import record_running_stats
    build, shape, dtype = MODELS[name]
    torch.manual_seed(0)
    layout = Layout.of(build())
    base = layout.flatten(build()).clone().to(precision)
    bases = [base, base + 0.01 * torch.randn_like(base), base]
    x, y, clients = _data(shape, dtype)
    x = (x.to(precision) / 255 if dtype == torch.uint8 else x.to(precision))
    build = _at(build, precision)
    seeds, momentum = [11, 22, 33], 0.3
    seq = LocalTrainer(build, layout, SGD, CPU)
    expected = []
    for b, c, s in zip(bases, clients, seeds):
        record = {"stats": [], "steps": 0}
        seq.train(b, x[c], y[c], s, lambda model, xb, yb, logits, r=record: (
            record_running_stats(r, model, momentum, x=xb), logits.new_zeros(()))[1])
        expected.append(record)
    records = [{"stats": [], "steps": 0}, None, {"stats": ["stale"], "steps": 9}]   # a retrained job starts afresh
    BatchedTrainer(build, layout, SGD, CPU).train_many(bases, x, y, clients, seeds,
                                                      [(records[0], momentum), None, (records[2], momentum)])
    assert records[1] is None
    for want, got in zip([expected[0], expected[2]], [records[0], records[2]]):
        assert got["steps"] == want["steps"] > 1 and len(got["stats"]) == len(want["stats"]) >= 1
        for (m, v), (wm, wv) in zip(got["stats"], want["stats"]):
            assert m.dtype == precision
            assert float((m - wm).norm() / wm.norm()) <= bound and float((v - wv).norm() / wv.norm()) <= bound
