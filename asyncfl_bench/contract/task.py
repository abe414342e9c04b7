"""The task contract: data + partition + model + presets.

A task turns a resolved ``setup`` (plain dict from a preset plus ``--set``
overrides) into tensors on the run's device, a partition of the training set
into clients, and a model builder.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from asyncfl_bench.errors import UserError


@dataclass
class TaskExtras:
    """What a task tells the run and the methods beyond its tensors: the whole task → method
    interface, declared (a method reads ``ctx.extras.FIELD``; an unknown key is an error)."""

    input_shape: tuple[int, ...] | None = None  # one sample's shape: what generators must produce
    input_kind: str = "dense"                   # "tokens": inputs are token ids (text tasks)
    augment: Callable | None = None             # augment(xb, generator) -> xb, in local training
    mean: Any = None                            # per-channel input normalisation the model applies
    std: Any = None
    proxy_x: torch.Tensor | None = None         # the server's unlabeled held-out proxy set
    # text tasks: the frozen encoder's embedding table and tokenizer, as the task tokenises
    embeddings: torch.Tensor | None = None
    pad_id: int = 0
    tokenizer_path: str = ""
    max_len: int = 0
    encode: Callable | None = None              # encode(texts, max_len) -> token ids
    task: str = ""                              # the task's name (FedRevive's LM corpus is per task)

    @classmethod
    def of(cls, value) -> "TaskExtras":
        """Accept a TaskExtras or a dict of its fields."""
        if isinstance(value, cls):
            return value
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise UserError(f"unknown task extra {unknown[0]!r}; valid: "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return cls(**value)


@dataclass
class TaskData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None            # None in a run that evaluates on validation only (a tune)
    y_test: torch.Tensor | None
    num_classes: int
    clients: list[torch.Tensor]            # per-client index tensors into the training set
    class_names: list[str] = field(default_factory=list)
    extras: TaskExtras = field(default_factory=TaskExtras)
    # the labeled validation split carved from the clients' data (``hold_out_validation``);
    # only the simulator's evaluation reads it, never a method
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    def __post_init__(self):
        self.extras = TaskExtras.of(self.extras)

    def to(self, device) -> "TaskData":
        move = lambda t: None if t is None else t.to(device)
        return TaskData(move(self.x_train), move(self.y_train), move(self.x_test), move(self.y_test),
                        self.num_classes, [move(c) for c in self.clients], self.class_names, self.extras,
                        move(self.x_val), move(self.y_val))


def _carve(clients: list[torch.Tensor], fraction: float, gen: torch.Generator):
    """Split a random ``fraction`` off every client's indices: (kept per client, carved, sorted)."""
    keep, carved = [], []
    for idx in clients:
        perm = idx[torch.randperm(len(idx), generator=gen).to(idx.device)]
        cut = int(round(fraction * len(idx)))
        cut = min(cut, len(idx) - 1)          # every client keeps at least one sample
        carved.append(perm[:cut])
        keep.append(torch.sort(perm[cut:]).values)
    return keep, torch.sort(torch.cat(carved)).values


def hold_out_proxy(data: TaskData, fraction: float, seed: int) -> TaskData:
    """Move ``fraction`` of every client's samples into an unlabeled server-side proxy set
    (``extras.proxy_x``), never trained on by any client. Applied to every method of a
    run alike, so methods that use a proxy set (FedEcho) and those that don't see the same
    client data."""
    if fraction <= 0:
        return data
    if fraction >= 1:
        raise UserError(f"proxy_fraction must be in [0, 1), got {fraction}; fix: e.g. --set proxy_fraction=0.1")
    keep, proxy_idx = _carve(data.clients, fraction, torch.Generator().manual_seed(int(seed) * 7919 + 17))
    extras = dataclasses.replace(data.extras, proxy_x=data.x_train[proxy_idx])
    return dataclasses.replace(data, clients=keep, extras=extras)


def hold_out_validation(data: TaskData, fraction: float, seed: int) -> TaskData:
    """Move ``fraction`` of every client's samples (after the proxy hold-out, so the two never
    overlap) into a labeled validation split (``x_val``, ``y_val``) that no client trains on.

    Per client and a fixed share, so the split follows the clients' own label skew and
    sizes (the federation's training distribution, not the test set's), every client
    keeps the same share of its data, and for a seed it is the same for every method.
    Tuning reads only metrics on it; the test set stays unseen until the report."""
    if fraction <= 0:
        return data
    if fraction >= 1:
        raise UserError(f"validation_fraction must be in [0, 1), got {fraction}; "
                        f"fix: e.g. --validation-fraction 0.1")
    keep, val_idx = _carve(data.clients, fraction, torch.Generator().manual_seed(int(seed) * 104_729 + 29))
    return dataclasses.replace(data, clients=keep, x_val=data.x_train[val_idx], y_val=data.y_train[val_idx])


EVALUATE_ON = ("test", "validation")


def evaluation_view(data: TaskData, evaluate_on: str) -> TaskData:
    """The data a run evaluates on: ``test`` keeps everything; ``validation`` (a tuning
    trial) drops the test set, so nothing in the run can read it."""
    if evaluate_on not in EVALUATE_ON:
        raise UserError(f"evaluate_on '{evaluate_on}' unknown; valid: {', '.join(EVALUATE_ON)}")
    if evaluate_on == "test":
        return data
    if data.x_val is None:
        raise UserError("evaluate_on=validation needs a validation split; fix: set validation_fraction, "
                        "e.g. 0.1 (asyncfl-bench tune sets it)")
    return dataclasses.replace(data, x_test=None, y_test=None)


class Task:
    """Subclasses set ``name``, ``description``, ``presets`` and implement
    ``load`` and ``build_model``.

    ``presets`` maps a preset name to a dict of overrides of
    ``asyncfl_bench.config.settings.SETUP_DEFAULTS``; a nested ``methods`` dict holds
    per-method hyperparameter overrides for that preset.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    presets: ClassVar[dict[str, dict]] = {}
    # task-wide setup keys merged between SETUP_DEFAULTS and the preset (an instance may set its own)
    setup_defaults: ClassVar[dict] = {}

    def load(self, setup: dict, seed: int, data_dir: Path | None) -> TaskData:
        raise NotImplementedError

    def model_builder(self, setup: dict, data: TaskData) -> Callable[[], nn.Module]:
        raise NotImplementedError


class TaskFamily(Task):
    """Tasks named ``PREFIX:ARGUMENT`` (bring-your-own data: ``imagefolder:<path>``), one
    instance per argument, registered per prefix in the entry-point group
    ``asyncfl_bench.task_families``. ``usage`` maps each prefix to its spelling and a line
    for ``asyncfl-bench list``."""

    usage: ClassVar[dict[str, tuple[str, str]]] = {}

    def __init__(self, spec: str):
        raise NotImplementedError

    @classmethod
    def from_results_name(cls, name: str) -> "TaskFamily | None":
        """The task whose results-folder name is ``name`` (worker processes get only that), or None."""
        return None

    def prepare(self) -> tuple[str, object]:
        """``data prepare PREFIX:ARGUMENT``: read (or download) the data into the cache;
        returns (where it lives, the data set)."""
        raise NotImplementedError
