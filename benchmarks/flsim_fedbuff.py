"""FedBuff in Meta's FLSim 0.1.0 on a workload exported by ``vs_flsim.py``: the peer's side
of that comparison, run in a process of its own so that its wall time includes its imports.

    python benchmarks/flsim_fedbuff.py WORKLOAD.pt [--json OUT.json]

The workload (``torch.save``d tensors and plain numbers, written by ``vs_flsim.py``) holds
the suite's data view, client index lists, initial weights and schedule. FLSim replays that
schedule through its own extension points: an ``IEventGenerator`` gives each job's start
and duration, and an ``AsyncUserSelector`` picks the job's client (FLSim takes only RANDOM or
ROUND_ROBIN from its config, so its selector factory is wrapped). Its training loop,
client copies, local SGD, staleness weights and FedBuff aggregation are FLSim's own.

The suite's FedBuff step is x ← x + η_g·(1/K)·Σ s(τ_i)Δ_i with s(τ) = (1+τ)^−½. FLSim's
FedBuff aggregator sums the K weighted deltas, so its lr is η_g/K; its polynomial
staleness weight divides by the weight at ``avg_staleness`` (default 1), so that is 0;
examples are weighted equally. FLSim has no arrival count: its trainer runs ``epochs`` of
``num_users`` arrivals each, so 300 arrivals over 20 users is 15 epochs (the workload must
divide evenly, and K must divide ``num_users``, or FLSim flushes a partial buffer).

FLSim 0.1.0 does not import on Python 3.11: some config dataclasses have defaults of an
unhashable class, which 3.11 rejects. ``_allow_dataclass_instance_defaults`` turns each into
a ``default_factory`` at class creation, in this process only (the installed FLSim is not
touched). FLSim needs hydra-core, omegaconf and opacus; its ``example_utils`` (CIFAR through
torchvision) is not imported.
"""
import time

_T0 = time.perf_counter()   # the whole process, imports included, as for the suite's side

import argparse
import copy
import dataclasses
import json
import math
import os
import typing

os.environ.setdefault("TQDM_DISABLE", "1")   # FLSim wraps its loops in progress bars


def _allow_dataclass_instance_defaults() -> None:
    """Python 3.11 rejects a dataclass field whose default's class is unhashable (another
    non-frozen dataclass); give such a field a copy of that default through a factory."""
    original = dataclasses._process_class

    def classvar(annotation) -> bool:
        if isinstance(annotation, str):
            return annotation.startswith(("ClassVar", "typing.ClassVar"))
        return annotation is typing.ClassVar or typing.get_origin(annotation) is typing.ClassVar

    def process(cls, *args, **kwargs):
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if classvar(annotation):
                continue
            d = cls.__dict__.get(name, dataclasses.MISSING)
            if isinstance(d, dataclasses.Field):
                if d.default is not dataclasses.MISSING and d.default.__class__.__hash__ is None:
                    value, d.default = d.default, dataclasses.MISSING
                    d.default_factory = lambda value=value: copy.deepcopy(value)
            elif d is not dataclasses.MISSING and d.__class__.__hash__ is None:
                setattr(cls, name, dataclasses.field(default_factory=lambda value=d: copy.deepcopy(value)))
        return original(cls, *args, **kwargs)
    dataclasses._process_class = process


_allow_dataclass_instance_defaults()

import torch
import torch.nn.functional as F

torch.set_num_threads(1)

import flsim.trainers.async_trainer as async_trainer
from flsim.clients.base_client import ClientConfig
from flsim.data.data_provider import IFLDataProvider, IFLUserData
from flsim.interfaces.model import IFLModel
from flsim.optimizers.async_aggregators import FedAvgWithLRFedBuffAggregatorConfig
from flsim.optimizers.local_optimizers import LocalOptimizerSGDConfig
from flsim.optimizers.optimizer_scheduler import ConstantLRSchedulerConfig
from flsim.trainers.async_trainer import AsyncTrainerConfig
from flsim.utils.async_trainer.async_example_weights import EqualExampleWeightConfig
from flsim.utils.async_trainer.async_staleness_weights import PolynomialStalenessWeightConfig
from flsim.utils.async_trainer.async_user_selector import AsyncUserSelector, AsyncUserSelectorInfo
from flsim.utils.async_trainer.async_weights import AsyncWeightConfig
from flsim.utils.async_trainer.training_event_generator import EventGeneratorConfig, IEventGenerator
from flsim.utils.config_utils import fullclassname
from flsim.utils.simple_batch_metrics import FLBatchMetrics
from hydra.utils import instantiate
from omegaconf import OmegaConf

from asyncfl_bench.tasks.models import SmallCNN   # the same model class the suite trains


class Model(IFLModel):
    """FLSim's model interface over a module; batches are (inputs, labels)."""

    def __init__(self, module):
        self.module = module

    def fl_forward(self, batch) -> FLBatchMetrics:
        x, y = batch
        out = self.module(x)
        return FLBatchMetrics(loss=F.cross_entropy(out, y), num_examples=len(y), predictions=out.detach(),
                              targets=y, model_inputs=[])

    def fl_create_training_batch(self, **kwargs):
        return kwargs.get("batch")

    def fl_get_module(self):
        return self.module

    def fl_cuda(self) -> None:
        pass

    def get_eval_metrics(self, batch) -> FLBatchMetrics:
        with torch.no_grad():
            return self.fl_forward(batch)

    def get_num_examples(self, batch) -> int:
        return len(batch[1])


class ClientData(IFLUserData):
    """One client's samples: one local epoch per ``train_data`` call, in a fresh random
    order, batches of ``batch_size`` with the last one partial (the suite's local trainer)."""

    def __init__(self, x, y, batch_size, generator):
        self.x, self.y, self.batch_size, self.generator = x, y, batch_size, generator

    def num_train_examples(self):
        return len(self.y)

    def num_eval_examples(self):
        return 0

    def num_train_batches(self):
        return math.ceil(len(self.y) / self.batch_size)

    def num_eval_batches(self):
        return 0

    def train_data(self):
        order = torch.randperm(len(self.y), generator=self.generator)
        for i in range(0, len(self.y), self.batch_size):
            yield self.x[order[i:i + self.batch_size]], self.y[order[i:i + self.batch_size]]

    def eval_data(self):
        return iter(())


class Clients(IFLDataProvider):
    def __init__(self, users):
        self.users = users

    def train_user_ids(self):
        return list(range(len(self.users)))

    def num_train_users(self):
        return len(self.users)

    def get_train_user(self, user_index):
        return self.users[user_index]

    def train_users(self):
        return self.users

    def eval_users(self):
        return []

    def test_users(self):
        return []


class Replay:
    """The exported schedule, in dispatch order. FLSim creates job k (its client, then the
    time to its start, then its duration) when job k−1 starts."""

    def __init__(self, jobs):
        self.jobs, self.k, self.now = jobs, 0, 0.0

    def client(self) -> int:
        return self.jobs[self.k][0] if self.k < len(self.jobs) else 0

    def time_to_next_start(self) -> float:
        start = self.jobs[self.k][1] if self.k < len(self.jobs) else 1e15   # after the run's end
        delta, self.now = start - self.now, start
        return delta

    def duration(self) -> float:
        d = self.jobs[self.k][2] - self.jobs[self.k][1] if self.k < len(self.jobs) else 1.0
        self.k += 1
        return d


REPLAY: Replay | None = None


class ReplayEvents(IEventGenerator):
    def __init__(self, **kwargs):
        pass

    def time_to_next_event_start(self) -> float:
        return REPLAY.time_to_next_start()

    def training_duration(self, num_training_examples: int) -> float:
        return REPLAY.duration()


@dataclasses.dataclass
class ReplayEventsConfig(EventGeneratorConfig):
    _target_: str = fullclassname(ReplayEvents)


class ReplaySelector(AsyncUserSelector):
    def get_random_user(self) -> AsyncUserSelectorInfo:
        c = REPLAY.client()
        return AsyncUserSelectorInfo(user_data=self.data_provider.get_train_user(c), user_index=c)


def main() -> None:
    global REPLAY
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload")
    ap.add_argument("--json", default=None, help="also write the result here")
    args = ap.parse_args()
    w = torch.load(args.workload, weights_only=True)   # tensors and numbers only
    torch.manual_seed(int(w["seed"]))
    K, arrivals, users = int(w["buffer_size"]), int(w["total_arrivals"]), len(w["clients"])
    if arrivals % users or users % K:
        raise SystemExit(f"FLSim counts arrivals in epochs of {users} users and flushes partial buffers: "
                         f"{arrivals} arrivals and K = {K} must divide evenly")
    shuffle = torch.Generator().manual_seed(int(w["seed"]))
    data = Clients([ClientData(w["x_train"][idx], w["y_train"][idx], int(w["batch_size"]), shuffle)
                    for idx in w["clients"]])
    module = SmallCNN(*[int(v) for v in w["model_args"]])
    module.load_state_dict(w["init_state"])
    REPLAY = Replay([(int(c), float(s), float(e)) for c, s, e in w["schedule"].tolist()])
    async_trainer.AsyncUserSelectorFactory.create_users_selector = classmethod(
        lambda cls, type, data_provider: ReplaySelector(data_provider))
    config = AsyncTrainerConfig(
        epochs=arrivals / users, do_eval=False, report_train_metrics=False, always_keep_trained_model=True,
        client=ClientConfig(epochs=int(w["local_epochs"]),
                            optimizer=LocalOptimizerSGDConfig(lr=float(w["lr"]), momentum=float(w["momentum"])),
                            lr_scheduler=ConstantLRSchedulerConfig()),
        aggregator=FedAvgWithLRFedBuffAggregatorConfig(lr=float(w["server_lr"]) / K, momentum=0.0, buffer_size=K),
        async_weight=AsyncWeightConfig(staleness_weight=PolynomialStalenessWeightConfig(exponent=0.5, avg_staleness=0),
                                       example_weight=EqualExampleWeightConfig(avg_num_examples=1)),
        training_event_generator=ReplayEventsConfig(), max_staleness=float("inf"))
    trainer = instantiate(OmegaConf.structured(config), model=Model(module), cuda_enabled=False)

    staleness, clients = [], []   # per arrival: to check that FLSim replayed the suite's schedule
    measure, update = trainer.aggregator.model_staleness, trainer.train_and_update_global_model

    def model_staleness(model_seqnum):
        staleness.append(int(measure(model_seqnum=model_seqnum)))
        return staleness[-1]

    def train_and_update_global_model(client):
        clients.append(int(client.user_info.user_index))
        return update(client)
    trainer.aggregator.model_staleness = model_staleness
    trainer.train_and_update_global_model = train_and_update_global_model
    t_train = time.perf_counter()
    final, _ = trainer.train(data_provider=data, metrics_reporter=None, num_total_users=users)
    t_end = time.perf_counter()
    with torch.no_grad():
        accuracy = float((final.fl_get_module().eval()(w["x_test"]).argmax(1) == w["y_test"]).float().mean())
    result = {"wall_s": time.perf_counter() - _T0, "train_loop_s": t_end - t_train, "arrivals": len(staleness),
              "staleness": staleness, "clients": clients, "final_accuracy": accuracy}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()
