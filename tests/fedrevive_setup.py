"""A small FedRevive (or AFL-DW) on 8×8 images and hand-made arrivals, shared by the
FedRevive tests."""
import torch

from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.methods.fedrevive import FedRevive
from asyncfl_bench.tasks.models import SmallCNN
from asyncfl_bench.training.flat import Layout

from conftest import make_context

# a generator, pool and KD loop small enough for a unit test
SMALL = {"nz": 8, "ngf": 4, "synth_batch": 8, "kd_batch": 4, "kd_steps": 2, "teachers": 3, "pool_size": 64,
         "aug_pad": 1, "aug_flip": False, "proxy_probes": 8}


def build():
    return SmallCNN(1, 8, 10, width=4, hidden=8)


def make(cls=FedRevive, extras=None, **hp):
    torch.manual_seed(0)
    model = build()
    ctx = make_context(build, num_clients=4, concurrency=2, num_classes=10,
                       extras=extras or {"input_shape": (1, 8, 8)})
    params = {**SMALL, **hp} if issubclass(cls, FedRevive) else hp
    return cls(ctx, Layout.of(model).flatten(model).clone(), **params)


def counts_of(client: int) -> torch.Tensor:
    """A made-up label histogram of 10 samples: classes client, client + 2 and 9."""
    counts = torch.zeros(10, dtype=torch.long)
    counts[[client, client + 2, 9]] = torch.tensor([6, 3, 1])
    return counts


def arrive(m, client, delta, tau, counts=None, stats=None):
    """One arrival of Δ = ``delta`` at staleness ``tau``; ``stats`` replaces the client's
    payload (its BN statistics) when given. Returns the base it was applied to."""
    base = m.params.clone()
    payload = m.payload(client) if stats is None else {"stats": stats, "steps": 0}
    m.receive(ClientUpdate(client=client, job=0, base_version=m.version - tau, staleness=tau, base=base,
                           params=base + delta, num_samples=10, arrival_time=0.0, payload=payload,
                           label_counts=counts_of(client) if counts is None else counts))
    return base
