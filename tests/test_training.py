"""Local training: SGD's multi-tensor (foreach) kernels change speed, not numbers; Adam's
fused kernel changes only rounding."""
import pytest
import torch

from asyncfl_bench.training import local as training
from asyncfl_bench.config.settings import SETUP_DEFAULTS
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.tasks.models import FemnistCNN, ImageCNN


SMALL = (lambda: ImageCNN(1, 12, 5, [0.5], [0.25], width=4, hidden=8), 12)
# channels-last weights: the fused kernel must see gradients laid out as its parameters
FEMNIST = (lambda: FemnistCNN(5), 28)


def _one_job(optimizer, model=SMALL, precision=torch.float32):
    """(base, train): a job's base parameters, and a function training it from them with
    whatever ``make_optimizer`` gives at call time."""
    local = {**SETUP_DEFAULTS["local"], "optimizer": optimizer, "lr": 0.01, "momentum": 0.9,
             "weight_decay": 1e-4, "batch_size": 8, "iterations": 6}
    build, side = model
    if precision != torch.float32:
        build = (lambda b: lambda: b().to(precision))(build)
    torch.manual_seed(0)
    layout = Layout.of(build())
    base = layout.flatten(build()).clone()
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (40, 1, side, side), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 5, (40,), generator=g)
    if precision != torch.float32:   # Standardize takes float images as already in [0, 1]
        x = x.to(precision) / 255
    return base, lambda: training.LocalTrainer(build, layout, local, torch.device("cpu")).train(base, x, y, 3)


def _train_both_ways(optimizer, monkeypatch, model=SMALL, precision=torch.float32):
    """(update, loss) from make_optimizer's kernels, then from torch's per-tensor loop."""
    base, train = _one_job(optimizer, model, precision)
    fast, fast_loss = train()
    real = training.make_optimizer

    def per_tensor(params, local):
        opt = real(params, local)
        assert opt.foreach is True or opt.fused is True
        opt.foreach = opt.fused = False
        return opt
    monkeypatch.setattr(training, "make_optimizer", per_tensor)
    slow, slow_loss = train()
    assert not torch.equal(fast, base)
    return fast - base, fast_loss, slow - base, slow_loss


def test_foreach_sgd_gives_bit_identical_updates(monkeypatch):
    fast, fast_loss, slow, slow_loss = _train_both_ways("sgd", monkeypatch)
    assert torch.equal(fast, slow) and fast_loss == slow_loss


@pytest.mark.parametrize("model", [SMALL, FEMNIST], ids=["image_cnn", "femnist_channels_last"])
def test_fused_adam_is_the_per_tensor_formula_in_float64(monkeypatch, model):
    # without float32 rounding the two kernels must agree to float64 precision (measured
    # ≤ 4.4e-15): same formula, and gradients read in the parameters' memory layout
    fast, fast_loss, slow, slow_loss = _train_both_ways("adam", monkeypatch, model, torch.float64)
    assert fast.dtype == torch.float64
    assert (fast - slow).norm() <= 1e-12 * slow.norm()
    assert abs(fast_loss - slow_loss) <= 1e-12 * abs(slow_loss)


@pytest.mark.parametrize("model", [SMALL, FEMNIST], ids=["image_cnn", "femnist_channels_last"])
def test_fused_adam_rounds_within_adams_float32_amplification(monkeypatch, model):
    # In float32 the fused kernel rounds differently, and Adam's division by √v turns that
    # into larger differences (see training.batched.TOLERANCE): measured 4e-7 to 1.6e-6 of
    # the update on the FEMNIST CNN across CPUs and init seeds. 1e-4 bounds that with room
    # while the float64 test above catches any difference in the arithmetic itself.
    fast, fast_loss, slow, slow_loss = _train_both_ways("adam", monkeypatch, model)
    assert (fast - slow).norm() <= 1e-4 * slow.norm()
    assert abs(fast_loss - slow_loss) <= 1e-5 * abs(slow_loss)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_local_optimizer_is_torch_optims_step_bit_for_bit(monkeypatch, optimizer):
    """LocalOptimizer calls torch.optim's functional steps with torch.optim.SGD(foreach) /
    Adam(fused)'s arguments and state: the same updates and losses exactly, in float32."""
    base, train = _one_job(optimizer)
    ours, our_loss = train()

    def torch_optim(params, local):
        if local["optimizer"] == "sgd":
            return torch.optim.SGD(params, lr=local["lr"], momentum=local["momentum"],
                                   weight_decay=local["weight_decay"], foreach=True)
        return torch.optim.Adam(params, lr=local["lr"], weight_decay=local["weight_decay"], fused=True)
    monkeypatch.setattr(training, "make_optimizer", torch_optim)
    theirs, their_loss = train()
    assert not torch.equal(ours, base)
    assert torch.equal(ours, theirs) and our_loss == their_loss


def test_a_fedbuff_run_does_not_import_torch_dynamo(tmp_path):
    """torch.optim.Optimizer's and torch.func.grad's first use import torch._dynamo (0.6 s of
    start-up), and a vmapped cross_entropy runs a Python decomposition that imports sympy's
    shape machinery (0.14 s); a run's clients, sequential and batched, use none of them."""
    import subprocess
    import sys
    code = ("import sys, pathlib; from asyncfl_bench.config.registry import get_method, get_task; "
            "from asyncfl_bench.config.settings import resolve; from asyncfl_bench.training.path import BatchClients; "
            "from asyncfl_bench.simulation.run import RunOptions, execute; t = get_task('digits'); "
            "c = resolve(t, 'ci', get_method('fedbuff'), 0, 'cpu', {'total_arrivals': 20, 'eval_every': 10}, "
            "['fedbuff']); d = t.load(c['setup'], 0); "
            "paths = [execute(c, t, d, RunOptions(pathlib.Path(sys.argv[1]) / b, force=True, "
            "batch_clients=BatchClients.parse(b)))[0]['training_path'] for b in ('auto', 'off')]; "
            "print(*paths, 'torch._dynamo' in sys.modules, 'torch.fx.experimental.symbolic_shapes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["batched(N=10)", "sequential", "False", "False"], out.stdout + out.stderr
