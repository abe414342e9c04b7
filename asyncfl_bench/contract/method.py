"""The method contract: one small class per method, most override one or two hooks.

Shaped after Flower's ``Strategy``: the simulator owns time, clients and data;
a method owns the server model and reacts to what arrives.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from torch import nn

from asyncfl_bench.contract.task import TaskExtras
from asyncfl_bench.errors import UserError
from asyncfl_bench.training.flat import Layout


@dataclass
class ClientUpdate:
    """What the server sees when a client's job arrives."""

    client: int
    job: int                 # position of the job in the schedule
    base_version: int        # server version the client started from
    staleness: int           # τ = version now − base_version
    base: torch.Tensor       # x_{t−τ}, the flat model the client received
    params: torch.Tensor     # x_i, the client's flat model after local training
    num_samples: int
    arrival_time: float
    payload: Any = None      # what ``Method.payload`` shipped with the model
    ends_round: bool = False  # synchronous schedules: the last arrival of its round
    # per-class sample counts of the client's training data (num_classes,), or None. It
    # reveals the client's label histogram to the server: only a method that declares it
    # reads it (FedRevive's class_proportions=histogram, as in the authors' code)
    label_counts: torch.Tensor | None = None
    # the seed the client's job trained under (its mini-batch order and augmentation
    # draws): a method that replays the client's program on the server needs it (gi-switch)
    job_seed: int = 0

    @property
    def delta(self) -> torch.Tensor:
        """Δ_i = x_i − x_{t−τ}."""
        return self.params - self.base


@dataclass(frozen=True, eq=False)
class RunPlan:
    """What the run's schedule fixes before the first arrival, for methods whose settings
    scale with the run (FedRevive's gates and s_max): how many arrivals the run has and,
    per arrival in order, how many arrivals the server had processed when its job was
    dispatched. Who trains when, never what a client holds."""

    arrivals: int
    dispatched_after: np.ndarray
    # delayed-base schedules: the arrival count whose model each job trains from (None: its dispatch)
    base_after: np.ndarray | None = None

    def versions(self, buffer_size: int = 1) -> int:
        """Server versions the run ends at when every ``buffer_size`` arrivals make one."""
        return self.arrivals // max(int(buffer_size), 1)

    def staleness(self, buffer_size: int = 1) -> np.ndarray:
        """τ of every arrival in versions of a method that steps every ``buffer_size``
        arrivals: the version at arrival i, i // B, less the version its job started from."""
        b = max(int(buffer_size), 1)
        bases = self.dispatched_after if self.base_after is None else self.base_after
        return np.arange(self.arrivals) // b - np.asarray(bases) // b


@dataclass
class ServerContext:
    """What a method may know about the run (never the clients' data)."""

    num_clients: int
    concurrency: int
    num_classes: int
    seed: int
    device: torch.device
    layout: Layout
    build_model: Callable[[], nn.Module]
    local: dict = field(default_factory=dict)   # local training settings (lr, ...)
    extras: TaskExtras = field(default_factory=TaskExtras)   # what the task declares (input shape, proxy set, ...)
    plan: RunPlan | None = None   # the run's schedule in numbers; None for a method built outside a run

    def __post_init__(self):
        self.extras = TaskExtras.of(self.extras)


Regularizer = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class LossTerm:
    """A local loss term written so that the batched step can vectorise it (FedGen's
    generator regulariser), in two parts:

    - ``draw(y)``: once per step, with the labels of the job's real samples, outside any
      vmap: the term's random draws and bookkeeping, returned as a dict of tensors;
    - ``loss(params, logits, y, mask, drawn)``: the term's value for one job, a pure
      function of its arguments (no in-place state, no Python branching on values), so
      that ``torch.func.vmap`` can run it for many jobs at once. ``params``: the model's
      parameters by name; ``mask``: which rows of the batch are real samples.

    The batched step pads the ``per_sample`` tensors (first dimension: the batch's real
    samples) with zero rows to the padded batch, so ``loss`` must read them through
    ``mask``, and runs one ``loss`` for all jobs of a group: what differs per job
    belongs in ``drawn``.
    """

    draw: Callable[[torch.Tensor], dict]
    loss: Callable[[dict, torch.Tensor, torch.Tensor, torch.Tensor, dict], torch.Tensor]
    per_sample: tuple[str, ...] = ()

    def as_regularizer(self) -> Regularizer:
        """The same term for sequential training: one job, every row real."""
        def regularise(model, x, y, logits):
            mask = torch.ones(len(y), dtype=torch.bool, device=y.device)
            return self.loss(dict(model.named_parameters()), logits, y, mask, self.draw(y))
        return regularise


class Method:
    """Base class. Subclasses set ``name``, ``defaults`` (the paper's
    hyperparameters) and implement ``receive``.

    The server model is ``self.params`` (a flat vector, see ``params.Layout``)
    and ``self.version`` counts its updates. Replace the model only through
    ``self.step(new)``; never modify ``self.params`` in place, because the
    simulator may hold it as the base of in-flight jobs.
    """

    name: ClassVar[str] = ""
    source: ClassVar[str] = ""           # short citation shown by `asyncfl-bench list`
    synchronous: ClassVar[bool] = False   # True: the schedule runs in rounds (FedAvg)
    defaults: ClassVar[dict] = {}
    # what `asyncfl-bench tune` samples: PARAM -> "log|uniform:low=L,high=H", the few
    # parameters that set the method's step and the strength of its idea (asyncfl_bench.tuning.space)
    search_space: ClassVar[dict] = {}

    def __init__(self, ctx: ServerContext, params: torch.Tensor, **hparams: Any):
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise UserError(f"method '{self.name}' has no parameter {unknown[0]!r}; "
                            f"valid: {', '.join(sorted(self.defaults)) or 'none'}")
        self.ctx = ctx
        self.hp = SimpleNamespace(**{**self.defaults, **hparams})
        self.params = params
        self.version = 0

    # -- hooks ---------------------------------------------------------------
    def payload(self, client: int) -> Any:
        """Extra state shipped with the model at dispatch (e.g. FedGen's generator)."""
        return None

    def client_regularizer(self, payload: Any) -> Regularizer | None:
        """An extra loss term ``f(model, x, y, logits)`` for local training."""
        return None

    def client_statistics(self, payload: Any) -> float | None:
        """The momentum with which this job's client records its layers' feature
        statistics into ``payload`` (a dict: ``payload["stats"]``, ``payload["steps"]``,
        as ``asyncfl_bench.training.feature_stats.fold_running_stats`` folds them), when
        that is all its ``client_regularizer`` does (it adds 0 to the loss); None
        otherwise. Such jobs can train batched: the batched step records the same
        statistics (within float tolerance) instead of the regulariser."""
        return None

    def client_loss_term(self, payload: Any) -> LossTerm | None:
        """This job's client loss term in vectorisable form, when its ``client_regularizer``
        is exactly ``client_loss_term(payload).as_regularizer()``; None otherwise. Such jobs
        can train batched: the batched step adds the term inside its vmapped loss."""
        return None

    def receive(self, update: ClientUpdate) -> None:
        """React to an arriving update: buffer, compensate, distil, ``step``."""
        raise NotImplementedError

    def server_state(self) -> dict:
        """Tensors and plain data needed to resume (buffers, caches, optimiser state)."""
        return {}

    def load_server_state(self, state: dict) -> None:
        pass

    def metrics(self) -> dict:
        """Flat numbers about the server's own work (seconds, counts, sizes),
        merged into the run's summary.json."""
        return {}

    def engagement(self) -> dict | None:
        """Whether the method's own mechanism ran in this run, for methods that have one
        that can stay idle (FedRevive's distillation, gi-switch's inversion): None, or
        ``{"engaged": bool, "mechanism": "distilled an arrival", "detail": what happened,
        "reason": why it never ran, "fix": what would make it run}`` (reason and fix
        only when not engaged). The run records it in summary.json, ``run`` warns and
        the report's leaderboard flags the method (``never_engaged``)."""
        return None

    # -- for subclasses --------------------------------------------------------
    def step(self, new_params: torch.Tensor) -> None:
        self.params = new_params
        self.version += 1




def never_engaged(method: str, engagement: dict | None) -> str | None:
    """The one-line warning for a run whose method never engaged its mechanism, else None:
    "fedrevive never distilled an arrival in this run: <reason>; fix: <fix>"."""
    if not engagement or engagement.get("engaged", True):
        return None
    fix = engagement.get("fix")
    return (f"{method} never {engagement['mechanism']} in this run: {engagement.get('reason') or 'no cause recorded'}"
            + (f"; fix: {fix}" if fix else ""))
