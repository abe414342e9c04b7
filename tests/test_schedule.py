import numpy as np
import pandas as pd
import pytest

from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.config.registry import methods
from asyncfl_bench.traces.schedule import make_schedule
from asyncfl_bench.traces.generators import make_trace
from asyncfl_bench.traces.model import Trace

from conftest import tiny_config


def test_schedule_depends_only_on_trace_and_seed():
    a = make_schedule(make_trace("fedrevive", 30, 1), 8, 200, seed=1)
    b = make_schedule(make_trace("fedrevive", 30, 1), 8, 200, seed=1)
    c = make_schedule(make_trace("fedrevive", 30, 2), 8, 200, seed=2)
    assert a.hash == b.hash and a.hash != c.hash
    assert np.all(np.diff(a.arrival_time) >= 0)
    assert a.max_in_flight() == 8
    # the k-th job of a client lasts the same in synchronous rounds
    s = make_schedule(make_trace("fedrevive", 30, 1), 8, 200, seed=1, synchronous=True)
    dur_a = {(c, k): t1 - t0 for c, k, t0, t1 in zip(a.client, a.job_index, a.dispatch_time, a.arrival_time)}
    dur_s = {(c, k): t1 - t0 for c, k, t0, t1 in zip(s.client, s.job_index, s.dispatch_time, s.arrival_time)}
    common = set(dur_a) & set(dur_s)
    assert len(common) > 20
    assert all(dur_a[key] == pytest.approx(dur_s[key]) for key in common)


def test_synchronous_rounds_wait_for_the_slowest():
    s = make_schedule(make_trace("exponential", 20, 0), 5, 50, seed=0, synchronous=True)
    for r in range(10):
        rnd = slice(5 * r, 5 * r + 5)
        assert len(set(s.dispatch_time[rnd])) == 1 and len(set(s.client[rnd])) == 5
        if r:
            assert s.dispatch_time[5 * r] == s.arrival_time[5 * r - 1]   # next round starts at the slowest


def test_every_method_sees_the_same_arrivals(tmp_path, digits):
    seen = {}
    for name, cls in methods().items():
        cfg = tiny_config(name, seed=3)
        data = digits.load(cfg["setup"], 3)
        summary, _ = execute(cfg, digits, data, RunOptions(tmp_path))
        folder = tmp_path / "digits" / name / summary["run_id"]
        arrivals = pd.read_csv(folder / "arrivals.csv")[["client", "time"]]
        seen.setdefault(cls.synchronous, []).append((name, summary["schedule_hash"], arrivals))
    for group in seen.values():
        _, h0, a0 = group[0]
        for name, h, a in group[1:]:
            assert h == h0, name
            pd.testing.assert_frame_equal(a, a0)
    assert len(seen[False]) >= 2


def test_concurrency_is_checked():
    with pytest.raises(UserError, match="concurrency"):
        make_schedule(make_trace("constant", 4, 0), 5, 10, seed=0)


def _windowed(windows, period=10.0):
    n = len(windows)
    return Trace(kind="test", params={}, compute_mean=np.full(n, 1.0), download=np.zeros(n),
                 upload_mean=np.zeros(n), upload_spread=np.zeros(n), jitter="exponential",
                 availability=tuple(None if w is None else np.array(w, dtype=float) for w in windows),
                 period=period)


# short windows (drops), touching windows and zero-length windows, and one client always on
WINDOWED = [[(0, 2)], [(3, 5)], [(6, 9), (9, 10)], [(1, 1), (4, 4.5)], None]


@pytest.mark.parametrize("synchronous, expected", [(False, ("c9ab8606c3153fa7", "375222428406d014", 19)),
                                                   (True, ("03ae456e3773c72e", "7753309652c7d317", 17))])
def test_schedule_hashes_are_pinned(synchronous, expected):
    """Every run's arrivals follow from the schedule: a change to it changes every result."""
    plain = make_schedule(make_trace("fedrevive", 30, 1), 8, 200, seed=1, synchronous=synchronous)
    windowed = make_schedule(_windowed(WINDOWED), 2, 120, seed=4, synchronous=synchronous)
    assert (plain.hash, windowed.hash, windowed.dropped) == expected


@pytest.mark.parametrize("synchronous", [False, True])
def test_dropped_jobs_still_advance_the_job_count(synchronous):
    trace = _windowed(WINDOWED)
    s = make_schedule(trace, 2, 120, seed=4, synchronous=synchronous)
    assert s.dropped > 0
    for c, k, t0, t1 in zip(s.client, s.job_index, s.dispatch_time, s.arrival_time):
        assert t1 == t0 + trace.duration(int(c), int(k), 4)    # the k-th job keeps its keyed duration
    missing = 0                                                # job indices skipped by drops
    for c in set(s.client.tolist()):
        ks = np.sort(s.job_index[s.client == c])
        assert len(set(ks.tolist())) == len(ks)
        missing += ks[-1] + 1 - len(ks)
    assert 0 < missing <= s.dropped


def test_round_end_marks_the_last_arrival_of_each_round():
    s = make_schedule(_windowed(WINDOWED), 2, 120, seed=4, synchronous=True)
    starts = np.flatnonzero(np.r_[True, np.diff(s.dispatch_time) != 0])   # each round's first row
    sizes = np.diff(np.r_[starts, len(s)])
    assert (sizes <= 2).all() and (sizes == 1).any()           # a round with a drop has one arrival
    for first, size in zip(starts, sizes):
        rnd = slice(first, first + size)
        assert (s.dispatched_after[rnd] == first).all()         # dispatched when the last round ended
        assert (np.diff(s.arrival_time[rnd]) >= 0).all()
        if first != starts[-1]:
            assert s.round_end[rnd].tolist() == [False] * (size - 1) + [True]
    # the last round may be cut off: it is marked as in a longer schedule, whose prefix this is
    longer = make_schedule(_windowed(WINDOWED), 2, 200, seed=4, synchronous=True)
    assert (longer.client[:120] == s.client).all() and (longer.arrival_time[:120] == s.arrival_time).all()
    assert longer.round_end[:120].tolist() == s.round_end.tolist()
    assert not longer.round_end[starts[-1]:120].all()          # this seed's last round is cut off
    assert make_schedule(_windowed(WINDOWED), 2, 120, seed=4).round_end is None
