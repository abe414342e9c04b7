"""The event loop: deliver the schedule's arrivals to a method, evaluate at fixed points.

Memory grows with the concurrency, not the number of clients: only the server
versions that in-flight jobs started from are kept, and clients are index
tensors into the task's data, never model copies. A delayed-base schedule also
keeps, from the arrival count a lagged job's base was current at until its
dispatch, that one version (shared by every job that takes it). Local training of a job runs
no later than its arrival; its inputs (base, data, job seed, payload) are all
fixed at dispatch, so when it runs cannot change its result.

The whole simulator state (position in the schedule, live bases, in-flight
jobs, finished-but-undelivered training results, the method's server state,
the log so far and the global RNG) is a ``state_dict`` of tensors and plain
data, so a run resumes bit for bit from a checkpoint.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch

from asyncfl_bench.contract.method import ClientUpdate, Method
from asyncfl_bench.traces.schedule import Schedule
from asyncfl_bench.contract.task import TaskData
from asyncfl_bench.training.batched import BatchedTrainer
from asyncfl_bench.errors import UserError
from asyncfl_bench.training.local import LocalTrainer, evaluate, job_seed


VALIDATION = "val_"   # the prefix of the validation split's columns


def evaluate_splits(model: torch.nn.Module, layout, params: torch.Tensor, data: TaskData, batch_size: int) -> dict:
    """One evaluation point's metrics on every labeled set the run holds: ``accuracy``,
    ``loss``, ``class_acc_C`` on the test set, and the same names prefixed ``val_`` on
    the validation split (a run that evaluates on validation only has no test set)."""
    fields = {}
    for prefix, x, y in (("", data.x_test, data.y_test), (VALIDATION, data.x_val, data.y_val)):
        if x is None:
            continue
        res = evaluate(model, layout, params, x, y, data.num_classes, batch_size)
        fields.update({f"{prefix}accuracy": res["accuracy"], f"{prefix}loss": res["loss"]})
        fields.update({f"{prefix}class_acc_{c}": float(a) for c, a in enumerate(res["class_accuracy"])})
    return fields


def headline(row: dict, metric: str) -> str:
    """The column a run is judged by: ``metric`` on the test set, or on the validation
    split where the run holds no test set."""
    return metric if metric in row else VALIDATION + metric


def measure_step(step: dict, before: torch.Tensor, after: torch.Tensor, base: torch.Tensor,
                 client: torch.Tensor) -> None:
    """Add one arrival to the effective-server-step sums: how far the server model moved
    (zero while a buffer fills) and the arriving update's size ‖Δ_i‖ = ‖x_i − base‖."""
    step["moved"] += float(torch.linalg.vector_norm(after - before))
    step["delta"] += float(torch.linalg.vector_norm(client - base))


@dataclass
class RunLog:
    curve: list[dict] = field(default_factory=list)      # one row per evaluation point
    arrivals: list[tuple] = field(default_factory=list)  # (arrival, client, time, staleness, base_version)
    max_live_bases: int = 0
    seconds: dict = field(default_factory=lambda: {"train": 0.0, "server": 0.0, "eval": 0.0, "total": 0.0})
    diverged_at: float | None = None                     # virtual time of divergence, if any
    diverged_reason: str | None = None
    # how jobs were trained: path/reason (set by the caller), then counts of
    # vectorised groups, jobs trained in them, and jobs trained one by one
    # Σ ‖x_{v+1} − x_v‖ over the run and Σ ‖Δ_i‖ of the arrivals: their ratio is the
    # effective server step, the share of a client's update that reaches the model
    step: dict = field(default_factory=lambda: {"moved": 0.0, "delta": 0.0})
    training: dict = field(default_factory=lambda: {"path": "sequential", "reason": "",
                                                     "groups": 0, "batched_jobs": 0, "sequential_jobs": 0,
                                                     "regularized_jobs": 0})


class Simulator:
    def __init__(self, method: Method, schedule: Schedule, data: TaskData, trainer: LocalTrainer,
                 eval_model: torch.nn.Module, seed: int, eval_every: int, eval_batch_size: int = 1024,
                 batched: BatchedTrainer | None = None):
        self.method, self.schedule, self.data, self.trainer = method, schedule, data, trainer
        self.batched = batched   # trains up to batched.group in-flight jobs in one pass
        self.eval_model, self.seed = eval_model, seed
        self.eval_every, self.eval_batch_size = eval_every, eval_batch_size
        self.live: dict[int, list] = {}        # version -> [params, number of in-flight jobs]
        self.jobs: dict[int, tuple] = {}       # job -> (base version, payload)
        self.pending: dict[int, tuple] = {}    # job -> (params, loss) trained ahead of its arrival
        self.position = 0                      # arrivals delivered so far
        self.log = RunLog()
        self._segment_start: float | None = None   # wall clock when this process's run() began
        self._dispatches = schedule.dispatches()
        # delayed-base schedules: how many lagged jobs take the model current at arrival count b
        # as their base; the model is kept alive from b on (``_keep``) until the last is dispatched
        self._lagged = (np.zeros(len(schedule), dtype=bool) if schedule.base_after is None
                        else schedule.base_after != schedule.dispatched_after)
        self._wanted = np.bincount(schedule.bases[self._lagged], minlength=len(schedule) + 1)
        self.kept: dict[int, list] = {}        # arrival count -> [version, lagged jobs still to dispatch]
        # each client's label histogram, sent with its updates (ClientUpdate.label_counts)
        self.label_counts = [torch.bincount(data.y_train[idx].long().cpu(), minlength=data.num_classes)
                             for idx in data.clients]

    # -- bookkeeping ---------------------------------------------------------
    def _keep(self, count: int) -> None:
        """At arrival count ``count``: hold the current model for the lagged jobs that will
        train from it (each holds one reference in ``live`` from now on)."""
        wanted = int(self._wanted[count])
        if wanted:
            m = self.method
            entry = self.live.get(m.version)
            if entry is None:
                entry = self.live[m.version] = [m.params.clone(), 0]
            entry[1] += wanted
            self.kept[count] = [m.version, wanted]

    def _dispatch(self, job: int) -> None:
        m = self.method
        if self._lagged[job]:   # its reference was taken when its base was current
            count = int(self.schedule.base_after[job])
            version = self.kept[count][0]
            self.kept[count][1] -= 1
            if self.kept[count][1] == 0:
                del self.kept[count]
        else:
            version = m.version
            entry = self.live.get(version)
            if entry is None:
                entry = self.live[version] = [m.params.clone(), 0]
            entry[1] += 1
        self.jobs[job] = (version, m.payload(int(self.schedule.client[job])))

    def _release(self, version: int) -> None:
        entry = self.live[version]
        entry[1] -= 1
        if entry[1] == 0:
            del self.live[version]

    def _train(self, job: int) -> tuple[torch.Tensor, float]:
        """The local training result of ``job``: pending, or computed now together with
        up to ``group − 1`` other in-flight jobs (kept in ``pending`` until they arrive)."""
        if job in self.pending:
            return self.pending.pop(job)
        s, d, stats = self.schedule, self.data, self.log.training
        version, payload = self.jobs[job]
        group = [job]
        kind = self._batch_kind(payload)
        if self.batched is not None and kind is not None:
            for j in sorted(self.jobs):   # soonest arrivals first
                if len(group) == self.batched.group:
                    break
                if j != job and j not in self.pending and self._batch_kind(self.jobs[j][1]) == kind:
                    group.append(j)
        if len(group) > 1:
            clients = [int(s.client[j]) for j in group]
            payloads = [self.jobs[j][1] for j in group]
            results = self.batched.train_many(
                [self.live[self.jobs[j][0]][0] for j in group], d.x_train, d.y_train,
                [d.clients[c] for c in clients],
                [job_seed(self.seed, c, int(s.job_index[j])) for c, j in zip(clients, group)],
                records=[(p, m) if (m := self.method.client_statistics(p)) is not None else None
                         for p in payloads],
                terms=[self.method.client_loss_term(p) for p in payloads] if kind == "term" else None)
            self.pending.update(zip(group[1:], results[1:]))
            stats["groups"] += 1
            stats["batched_jobs"] += len(group)
            return results[0]
        # a regularised job (its loss term needs a module) or a lone job: one by one
        regularizer = self.method.client_regularizer(payload)
        stats["sequential_jobs"] += 1
        stats["regularized_jobs"] += regularizer is not None and kind is None   # could not batch
        client = int(s.client[job])
        idx = d.clients[client]
        return self.trainer.train(self.live[version][0], d.x_train[idx], d.y_train[idx],
                                  job_seed(self.seed, client, int(s.job_index[job])), regularizer)

    def _batch_kind(self, payload) -> str | None:
        """How a job can join a batched group: "plain" (no client regulariser, or one that
        only records feature statistics, which the batched step records itself), "term" (a
        regulariser given as a LossTerm, added in the vmapped loss; such jobs batch only
        with each other), or None (a regulariser that needs the module: sequential)."""
        m = self.method
        if m.client_statistics(payload) is not None:
            return "plain"
        if m.client_loss_term(payload) is not None:
            return "term"
        return "plain" if m.client_regularizer(payload) is None else None

    def _evaluate(self, arrivals: int, now: float) -> dict:
        t0 = time.perf_counter()
        row = {"arrivals": arrivals, "version": self.method.version, "time": now,
               **evaluate_splits(self.eval_model, self.trainer.layout, self.method.params, self.data,
                                 self.eval_batch_size)}
        self.log.seconds["eval"] += time.perf_counter() - t0
        self.log.curve.append(row)
        return row

    # -- the loop --------------------------------------------------------------
    def run(self, on_progress: Callable[[int, float, dict | None], None] | None = None,
            on_arrival: Callable[["Simulator"], None] | None = None) -> RunLog:
        """Deliver the remaining arrivals. ``on_arrival`` runs after each one, with the
        simulator in a consistent state (the place to write checkpoints)."""
        log, s, m = self.log, self.schedule, self.method
        start = self._segment_start = time.perf_counter()
        if self.position == 0 and not log.curve:
            self._keep(0)
            for job in self._dispatches[0]:
                self._dispatch(job)
            self._evaluate(0, 0.0)
        while self.position < len(s) and log.diverged_at is None:
            i = self.position
            client, now = int(s.client[i]), float(s.arrival_time[i])
            t0 = time.perf_counter()
            params, loss = self._train(i)
            t1 = time.perf_counter()
            version, payload = self.jobs.pop(i)
            staleness = m.version - version
            before = m.params.clone()
            m.receive(ClientUpdate(client=client, job=i, base_version=version, staleness=staleness,
                                   base=self.live[version][0], params=params,
                                   num_samples=len(self.data.clients[client]), arrival_time=now, payload=payload,
                                   ends_round=s.round_end is not None and bool(s.round_end[i]),
                                   label_counts=self.label_counts[client],
                                   job_seed=job_seed(self.seed, client, int(s.job_index[i]))))
            t2 = time.perf_counter()
            measure_step(log.step, before, m.params, self.live[version][0], params)
            log.seconds["train"] += t1 - t0
            log.seconds["server"] += t2 - t1
            log.arrivals.append((i + 1, client, now, staleness, version))
            self._release(version)
            self._keep(i + 1)
            for job in self._dispatches[i + 1]:
                self._dispatch(job)
            log.max_live_bases = max(log.max_live_bases, len(self.live))
            self.position = i + 1
            row = None
            if not math.isfinite(loss):
                log.diverged_at, log.diverged_reason = now, f"client {client} local loss is {loss}"
            if (i + 1) % self.eval_every == 0 or i + 1 == len(s) or log.diverged_at is not None:
                row = self._evaluate(i + 1, now)
                loss_key = headline(row, "loss")
                if log.diverged_at is None and (not math.isfinite(row[loss_key])
                                                or not bool(torch.isfinite(m.params).all())):
                    split = "validation" if loss_key.startswith(VALIDATION) else "test"
                    log.diverged_at, log.diverged_reason = now, f"{split} loss is {row[loss_key]}"
            if on_progress is not None:
                on_progress(i + 1, now, row)
            if on_arrival is not None:
                on_arrival(self)
        log.seconds["total"] += time.perf_counter() - start
        self._segment_start = None
        return log

    # -- checkpoints -----------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit (tensors and plain data only)."""
        m = self.method
        log = asdict(self.log)
        if self._segment_start is not None:   # a resumed run's total adds every segment, as train and server do
            log["seconds"]["total"] += time.perf_counter() - self._segment_start
        return {
            "schedule_hash": self.schedule.hash,
            "position": self.position,
            "live": {v: list(e) for v, e in self.live.items()},
            "jobs": dict(self.jobs),
            "kept": {c: list(e) for c, e in self.kept.items()},
            "pending": dict(self.pending),
            "method": {"params": m.params, "version": m.version, "state": m.server_state()},
            "log": log,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def load_state_dict(self, state: dict) -> None:
        # positions, jobs and bases index into the schedule: another schedule for the same
        # config (a changed trace file, or changed scheduling rules) cannot be continued
        saved = state.get("schedule_hash", self.schedule.hash)   # older checkpoints lack it
        if saved != self.schedule.hash:
            raise UserError(f"the checkpoint was made on schedule {saved}, but this run's schedule is "
                            f"{self.schedule.hash} (the trace file or the scheduling rules changed); "
                            "fix: delete the run folder's checkpoint.pt, or rerun with --force")
        self.position = state["position"]
        self.live = {int(v): list(e) for v, e in state["live"].items()}
        self.jobs = {int(j): tuple(e) for j, e in state["jobs"].items()}
        self.kept = {int(c): list(e) for c, e in state.get("kept", {}).items()}
        self.pending = {int(j): tuple(e) for j, e in state["pending"].items()}
        m = self.method
        m.params, m.version = state["method"]["params"], state["method"]["version"]
        m.load_server_state(state["method"]["state"])
        log = state["log"]
        log["arrivals"] = [tuple(a) for a in log["arrivals"]]
        self.log = RunLog(**log)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
