"""The server's replay of a client's LocalUpdate (methods/gi_switch/emulation.py): given the
client's own data, base and job seed it reproduces the client's real update
(training/local.py's LocalTrainer) for each client program, and its derivative with
respect to the data is the true one."""
import pytest
import torch

from asyncfl_bench.methods.gi_switch.emulation import ClientProgram, LocalEmulator
from asyncfl_bench.tasks.augment import CropFlip
from asyncfl_bench.tasks.models import MLP, SmallCNN
from asyncfl_bench.training.flat import Layout
from asyncfl_bench.training.local import LocalTrainer

PROGRAMS = {
    # the reference code's client: full batch, no momentum, 5 epochs
    "full-batch-gd": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0,
                      "batch_size": 1000, "epochs": 5, "iterations": 0},
    # the digits ci client: mini-batches of a fresh permutation per epoch, momentum, weight decay
    "minibatch-sgd-momentum": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.5, "weight_decay": 1e-3,
                               "batch_size": 5, "epochs": 2, "iterations": 0},
    # the femnist ci client: Adam for a fixed number of mini-batch steps
    "adam-iterations": {"optimizer": "adam", "lr": 1e-2, "momentum": 0.0, "weight_decay": 1e-4,
                        "batch_size": 8, "epochs": 1, "iterations": 7},
}


# tiny double-backward graphs: threads only add overhead
pytestmark = pytest.mark.usefixtures("one_thread")


def _client(dtype, n=23, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 8, 8, generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g)


def _real_and_replayed(local, dtype, augment=None, job=123):
    torch.manual_seed(0)
    build = lambda: SmallCNN(1, 8, 4).to(dtype)
    layout = Layout.of(build())
    x0 = layout.flatten(build())
    x, y = _client(dtype)
    trainer = LocalTrainer(build, layout, local, torch.device("cpu"), augment=augment)
    params, _ = trainer.train(x0, x, y, seed=job)
    em = LocalEmulator(build(), layout, local, augment=augment)
    return em.trainable(params - x0), em.delta(x0, x, y, len(y), job)


@pytest.mark.parametrize("program", PROGRAMS)
def test_replay_reproduces_the_real_client_update_exactly_in_float64(program):
    real, replayed = _real_and_replayed(PROGRAMS[program], torch.float64)
    assert real.abs().max() > 1e-3                                   # the client really moved
    # float64: only rounding differs (torch's foreach SGD / fused Adam against the replay)
    assert torch.allclose(replayed, real, rtol=0, atol=1e-12 * float(real.abs().max()))


@pytest.mark.parametrize("program", PROGRAMS)
def test_replay_matches_the_real_client_update_in_float32(program):
    real, replayed = _real_and_replayed(PROGRAMS[program], torch.float32)
    # Adam's 1/√v amplifies fused-vs-single-tensor rounding (~1e-6 of the update)
    assert float((replayed - real).abs().max() / real.abs().max()) < 1e-4


def test_replay_reproduces_augmentation_and_another_job_seed_does_not():
    local = PROGRAMS["minibatch-sgd-momentum"]
    aug = CropFlip(pad=1, flip=True)
    real, replayed = _real_and_replayed(local, torch.float64, augment=aug)
    assert torch.allclose(replayed, real, rtol=0, atol=1e-12 * float(real.abs().max()))
    # the batch order and the crops come from the job seed: another seed is another update
    other, _ = _real_and_replayed(local, torch.float64, augment=aug, job=124)
    assert float((other - real).abs().sum() / real.abs().sum()) > 0.05


def test_smaller_set_keeps_the_clients_steps_and_share_per_batch():
    minibatch = ClientProgram.of(PROGRAMS["minibatch-sgd-momentum"], 23)   # 5 per batch, 2 epochs
    assert minibatch.steps == 10 and minibatch.batch_size_for(23) == 5
    assert minibatch.batch_size_for(12) == 3                              # round(5·12/23)
    batches = minibatch.batches(12, torch.Generator().manual_seed(0), "cpu")
    assert len(batches) == 10
    first_epoch = torch.cat(batches[:4])                                 # ⌈12/3⌉ batches: each sample once
    assert sorted(first_epoch.tolist()) == list(range(12))
    full = ClientProgram.of(PROGRAMS["full-batch-gd"], 23)
    assert full.steps == 5 and full.batch_size_for(12) == 12            # still full batch


@pytest.mark.parametrize("program", PROGRAMS)
def test_replay_gradient_with_respect_to_the_data_is_the_true_one(program):
    """The unroll is differentiated through every step (torch's own differentiable
    optimisers keep only the last step's graph): finite differences agree."""
    torch.manual_seed(0)
    build = lambda: MLP(3, 2, hidden=4).double()
    layout = Layout.of(build())
    x0 = layout.flatten(build())
    local = {**PROGRAMS[program], "batch_size": 2, "epochs": 1, "iterations": 3 if program == "adam-iterations" else 0}
    em = LocalEmulator(build(), layout, local)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: em.delta(x0, a, b, 6, 5, create_graph=True), (x, y),
                                    eps=1e-6, atol=1e-5)


def test_a_run_sends_the_job_seed_its_client_trained_under(tmp_path, monkeypatch):
    """Replaying a real arrival of a run (its base, the client's data, ClientUpdate.job_seed)
    gives that arrival's update: the seed the server sees is the one the client used."""
    from asyncfl_bench.methods.fedasync import FedAsync
    from asyncfl_bench.simulation.run import RunOptions, execute, prepare_data
    from asyncfl_bench.tasks.digits import Digits
    from asyncfl_bench.training.path import BatchClients
    from conftest import tiny_config

    cfg = tiny_config("fedasync", total_arrivals=12, num_clients=6, concurrency=3)
    task = Digits()
    seen = []
    real_receive = FedAsync.receive
    monkeypatch.setattr(FedAsync, "receive", lambda self, u: (seen.append(u), real_receive(self, u))[1])
    execute(cfg, task, task.load(cfg["setup"], 0), RunOptions(tmp_path, batch_clients=BatchClients("off")))
    data = prepare_data(task.load(cfg["setup"], 0), cfg["setup"], 0)
    build = lambda: SmallCNN(1, 8, 10)
    em = LocalEmulator(build(), Layout.of(build()), cfg["setup"]["local"])
    assert len({u.job_seed for u in seen}) == len(seen)                 # one seed per job
    for u in seen[-3:]:                                                  # clients on their 2nd+ job too
        idx = data.clients[u.client]
        replayed = em.delta(u.base, data.x_train[idx], data.y_train[idx], len(idx), u.job_seed)
        real = em.trainable(u.delta)
        assert float((replayed - real).abs().max() / real.abs().max()) < 1e-4
