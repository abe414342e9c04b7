import numpy as np
import pandas as pd
import pytest

from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import execute
from asyncfl_bench.config.registry import methods
from asyncfl_bench.traces.schedule import make_schedule
from asyncfl_bench.traces.generators import make_trace

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
        summary, _ = execute(cfg, digits, data, tmp_path)
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
