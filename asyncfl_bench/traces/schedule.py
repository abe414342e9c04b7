"""The schedule: which client trains when, derived from a trace and a seed only.

Asynchronous mode keeps ``concurrency`` jobs in flight; when jobs finish, their
slots are refilled with clients drawn uniformly from the idle ones. Synchronous
mode (FedAvg) starts ``concurrency`` clients together and waits for the slowest.
Neither depends on the method, so every asynchronous method sees exactly the
same arrivals; FedAvg sees the same per-job durations (keyed by client and job
index) arranged in rounds.

A trace with a base lag (``Trace.base_lag``, in rounds of ``concurrency`` arrivals;
the intertwined trace's ``mode=lag``) keeps the timing and order of every job but
gives a lagged client's job an older base: it trains from the server model as it
stood after ``base_after = max(dispatched_after − round(lag·concurrency), 0)``
arrivals, the same point of the arrival sequence for every method (Wang & Gao's
delayed clients, which report at the normal rate from a model ``delay`` rounds old).

Arrivals that fall at the same instant are all delivered before any new job is
dispatched, so with a constant trace the asynchronous schedule degenerates into
synchronous rounds.

A trace with availability windows restricts who may be given a job: a slot that
no idle client can take stays open until the first idle client comes online; a
synchronous round starts once ``concurrency`` clients are online together. A job
whose client goes offline before it would arrive is dropped, as FedScale drops
clients that leave mid-round: its update never arrives, its slot opens at that
moment (a synchronous round waits for it until then), and the client's job count
still advances, so later jobs keep their durations.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from asyncfl_bench.errors import UserError
from asyncfl_bench.traces.model import Trace


class Job(NamedTuple):
    """One job: one row of a ``Schedule``."""

    client: int
    job_index: int          # the k of "the client's k-th job"
    dispatch_time: float
    arrival_time: float     # when its update reaches the server, if its client stays online
    dispatched_after: int   # arrivals the server had processed when it was dispatched


@dataclass(frozen=True, eq=False)
class Schedule:
    """Jobs in arrival order. ``dispatched_after[i]`` is how many arrivals the
    server had processed when job i was dispatched (0: the initial jobs)."""

    client: np.ndarray
    job_index: np.ndarray        # the k of "the client's k-th job"
    dispatch_time: np.ndarray
    arrival_time: np.ndarray
    dispatched_after: np.ndarray
    synchronous: bool
    # jobs lost because their client went offline mid-job, until the schedule was complete
    # (a synchronous one counts its last round whole, even where that round is cut)
    dropped: int = 0
    # synchronous only: True at the last arrival of each round (a round whose jobs were
    # dropped has fewer than ``concurrency`` arrivals; one cut off at the end has none)
    round_end: np.ndarray | None = None
    # delayed-base mode only: arrivals processed when the model job i trains from was current
    # (None: every job trains from the model current at its dispatch)
    base_after: np.ndarray | None = None

    @property
    def bases(self) -> np.ndarray:
        """Per job, the arrival count at which its base model was current."""
        return self.dispatched_after if self.base_after is None else self.base_after

    def __len__(self) -> int:
        return len(self.client)

    def dispatches(self) -> list[list[int]]:
        """For each count of processed arrivals, the jobs dispatched right then."""
        out: list[list[int]] = [[] for _ in range(len(self) + 1)]
        for i, after in enumerate(self.dispatched_after):
            out[after].append(i)
        return out

    @property
    def hash(self) -> str:
        h = hashlib.sha256(b"sync" if self.synchronous else b"async")
        for a in (self.client, self.job_index, self.dispatch_time, self.arrival_time, self.dispatched_after):
            h.update(np.ascontiguousarray(a).tobytes())
        if self.dropped:   # only traces with availability windows drop jobs
            h.update(b"dropped%d" % self.dropped)
        if self.base_after is not None:   # only delayed-base traces lag
            h.update(b"base" + np.ascontiguousarray(self.base_after).tobytes())
        return h.hexdigest()[:16]

    def max_in_flight(self) -> int:
        events = sorted([(t, 1) for t in self.dispatch_time] + [(t, -1) for t in self.arrival_time],
                        key=lambda e: (e[0], e[1]))
        live = peak = 0
        for _, d in events:
            live += d
            peak = max(peak, live)
        return peak


def make_schedule(trace: Trace, concurrency: int, arrivals: int, seed: int,
                  synchronous: bool = False) -> Schedule:
    """The first ``arrivals`` arrivals of ``trace`` with ``concurrency`` jobs per round
    (``synchronous``) or in flight; see the module docstring."""
    n = trace.num_clients
    if not 1 <= concurrency <= n:
        raise UserError(f"concurrency must be between 1 and the number of clients ({n}), got {concurrency}; "
                        f"fix: --set concurrency=N with N <= num_clients")
    if arrivals < 1:
        raise UserError(f"total_arrivals must be >= 1, got {arrivals}")
    pick = np.random.default_rng([seed, 0x5E1EC7])   # draws which clients get the jobs
    launcher = _Launcher(trace, seed, concurrency)
    if synchronous:
        jobs, round_ends = _synchronous_rounds(launcher, pick, concurrency, arrivals)
    else:
        jobs, round_ends = _AsynchronousEvents(launcher, pick, concurrency).run(arrivals), None
    jobs = jobs[:arrivals]   # the last round or instant may overshoot
    client = np.array([j.client for j in jobs], dtype=np.int64)
    after = np.minimum(np.array([j.dispatched_after for j in jobs], dtype=np.int64), arrivals)
    lag = np.rint(trace.base_lag[client] * concurrency).astype(np.int64)
    base_after = np.maximum(after - lag, 0)
    return Schedule(client=client,
                    job_index=np.array([j.job_index for j in jobs], dtype=np.int64),
                    dispatch_time=np.array([j.dispatch_time for j in jobs]),
                    arrival_time=np.array([j.arrival_time for j in jobs]),
                    dispatched_after=after,
                    synchronous=synchronous, dropped=launcher.dropped,
                    round_end=None if round_ends is None else np.isin(np.arange(len(jobs)), round_ends),
                    base_after=None if np.array_equal(base_after, after) else base_after)


class _Launcher:
    """What both modes share: launching a client's next job with its keyed duration,
    asking whether a client can start one, and counting the jobs that drop."""

    def __init__(self, trace: Trace, seed: int, concurrency: int):
        self.trace = trace
        self.seed = seed
        self.jobs_started = np.zeros(trace.num_clients, dtype=np.int64)   # per client: its next k
        self.dropped = 0
        self.drop_streak = 0   # jobs dropped since the last arrival
        # a trace whose windows are all shorter than its jobs would drop jobs forever
        self.drop_limit = 1000 + 100 * concurrency

    def launch(self, client: int, now: float, after: int) -> tuple[Job, float]:
        """The client's next job, and when it ends: its arrival, or the moment its client
        goes offline (then it is dropped)."""
        k = int(self.jobs_started[client])
        self.jobs_started[client] += 1
        job = Job(client, k, now, now + self.trace.duration(client, k, self.seed), after)
        return job, min(job.arrival_time, self.trace.online_until(client, now))

    def can_start(self, client: int, now: float) -> bool:
        # online now and not at the very end of its window, where any job would drop at
        # once; asked the way a drop is decided, so float rounding cannot make them disagree
        return self.trace.available(client, now) and self.trace.online_until(client, now) > now

    def count_drops(self, arrived: int, lost: int) -> None:
        """Tally ``lost`` drops alongside ``arrived`` arrivals (one round, or one instant)."""
        self.dropped += lost
        self.drop_streak = self.drop_streak + lost if not arrived else 0
        if self.drop_streak > self.drop_limit:
            raise UserError(f"{self.drop_streak} jobs in a row were dropped because their clients went offline "
                            "before finishing; the trace's availability windows are shorter than its jobs. "
                            "fix: use longer windows or shorter jobs in the trace")


def _later(t: float, now: float) -> float:
    """``t``, or just after ``now`` where ``t`` is not later: waiting always moves time on,
    even where rounding makes a window's start look no later than now."""
    return t if t > now else math.nextafter(now, math.inf)


def _synchronous_rounds(launcher: _Launcher, pick: np.random.Generator, concurrency: int,
                        arrivals: int) -> tuple[list[Job], list[int]]:
    """FedAvg rounds: ``concurrency`` clients drawn from those online start together, and
    the next round starts once the last of them has arrived or dropped out. Returns the
    arrived jobs in arrival order (at least ``arrivals``) and each round's last index."""
    trace = launcher.trace
    n = trace.num_clients
    arrived: list[Job] = []
    round_ends: list[int] = []
    now = 0.0
    while len(arrived) < arrivals:
        if trace.availability is None:
            clients = pick.choice(n, size=concurrency, replace=False)
        else:
            now, ready = _round_start(launcher, now, concurrency)
            clients = np.asarray(ready)[pick.choice(len(ready), size=concurrency, replace=False)]
        launched = [launcher.launch(int(c), now, len(arrived)) for c in clients]
        kept = sorted((job for job, end in launched if end == job.arrival_time),
                      key=lambda job: (job.arrival_time, job.client))
        launcher.count_drops(arrived=len(kept), lost=len(launched) - len(kept))
        arrived.extend(kept)
        if kept:
            round_ends.append(len(arrived) - 1)
        now = max(end for _, end in launched)   # the round waits for arrivals and drop-outs
    return arrived, round_ends


def _round_start(launcher: _Launcher, now: float, concurrency: int) -> tuple[float, list[int]]:
    """The first time >= ``now`` at which ``concurrency`` clients can start a job, and those
    that can then."""
    trace = launcher.trace
    n = trace.num_clients
    for _ in range(4 * n + 8):   # each step brings at least one more client to a window start
        ready = [c for c in range(n) if launcher.can_start(c, now)]
        if len(ready) >= concurrency:
            return now, ready
        started = set(ready)
        later = min((trace.next_available(c, now, startable=True) for c in range(n) if c not in started),
                    default=math.inf)
        if not math.isfinite(later):
            break
        now = _later(later, now)
    raise UserError(f"the trace's availability windows never have {concurrency} clients online "
                    "together; fix: lower --set concurrency=N or use a trace without windows")


class _AsynchronousEvents:
    """Asynchronous mode: ``concurrency`` slots, each holding a job in flight or open; a
    heap of timed events (a job arriving, a job dropping, a wake-up for open slots). All
    events of one instant are handled before the freed slots are refilled."""

    def __init__(self, launcher: _Launcher, pick: np.random.Generator, concurrency: int):
        self.launcher = launcher
        self.trace = launcher.trace
        self.pick = pick
        self.idle = list(range(self.trace.num_clients))   # its order is part of the draw
        # (time, serial, event): event is the Job arriving, a client id (its job dropped),
        # or None (a wake-up); the serial keeps one instant's events in push order
        self.heap: list[tuple] = []
        self.serial = itertools.count()
        self.open_slots = concurrency
        self.waking = False        # a wake-up is queued
        self.arrived: list[Job] = []

    def run(self, arrivals: int) -> list[Job]:
        """The arrived jobs in arrival order, at least ``arrivals`` of them."""
        self.fill(0.0)
        while len(self.arrived) < arrivals:
            if not self.heap:
                raise UserError("no client of the trace is ever online again, so the schedule stops "
                                f"after {len(self.arrived)} arrivals; fix: lower --set total_arrivals or use "
                                "longer availability windows")
            t, batch, gone = self.next_instant()
            self.launcher.count_drops(arrived=len(batch), lost=len(gone))
            self.arrived.extend(batch)
            self.idle.extend(job.client for job in batch)
            self.idle.extend(gone)
            self.open_slots += len(batch) + len(gone)
            self.fill(t)
        return self.arrived

    def next_instant(self) -> tuple[float, list[Job], list[int]]:
        """Pop every event of the earliest time: that time, the jobs arriving then, and the
        clients whose jobs drop then."""
        t = self.heap[0][0]
        batch, gone = [], []
        while self.heap and self.heap[0][0] == t:
            event = heapq.heappop(self.heap)[2]
            if event is None:
                self.waking = False
            elif isinstance(event, Job):
                batch.append(event)
            else:
                gone.append(event)
        return t, batch, gone

    def fill(self, now: float) -> None:
        """Give open slots to idle clients drawn uniformly from those that can start now;
        slots left open get a wake-up for the first idle client to come online."""
        while self.open_slots:
            ready = (range(len(self.idle)) if self.trace.availability is None
                     else [j for j, c in enumerate(self.idle) if self.launcher.can_start(c, now)])
            if not ready:
                break
            j = ready[int(self.pick.integers(len(ready)))]
            self.idle[j], self.idle[-1] = self.idle[-1], self.idle[j]
            job, end = self.launcher.launch(self.idle.pop(), now, len(self.arrived))
            self.push(end, job if end == job.arrival_time else job.client)
            self.open_slots -= 1
        if self.open_slots and not self.waking:
            wake = min((self.trace.next_available(c, now, startable=True) for c in self.idle), default=math.inf)
            if math.isfinite(wake):
                self.push(_later(wake, now), None)
                self.waking = True

    def push(self, t: float, event) -> None:
        heapq.heappush(self.heap, (t, next(self.serial), event))
