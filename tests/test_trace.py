import math

import numpy as np
import pytest

from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import build_schedule, build_trace, class_counts
from asyncfl_bench.config.registry import methods
from asyncfl_bench.traces.schedule import make_schedule
from asyncfl_bench.traces.generators import GENERATORS, make_trace, slow_classes
from asyncfl_bench.traces.model import Trace
from asyncfl_bench.traces.file import read_trace, write_trace

from conftest import tiny_config

COUNTS = np.random.default_rng(0).integers(0, 40, size=(30, 10))
KINDS = ["constant", "uniform:low=0.2,high=1.8", "exponential:mean=2", "halfnormal", "lognormal:sigma=0.8",
         "pareto:shape=1.5", "fedrevive", "fedrevive-shifted", "tiers:slow=4,slow_frac=0.3",
         "intertwined:classes=3/7,slow=5,base=pareto,shape=2.5"]


def jobs(schedule):
    return list(zip(schedule.client.tolist(), schedule.job_index.tolist(), schedule.dispatch_time.tolist(),
                    schedule.arrival_time.tolist(), schedule.dispatched_after.tolist()))


def test_every_kind_is_listed_and_has_mean_one_jitter():
    assert {k.split(":")[0] for k in KINDS} == set(GENERATORS)
    for spec in KINDS:
        trace = make_trace(spec, 30, seed=4, class_counts=COUNTS)
        durations = np.array([[trace.duration(c, k, 4) for k in range(400)] for c in range(30)])
        assert (durations >= 0).all(), spec
        # the expected duration the trace states is the mean of what it draws
        rel = abs(durations.mean() - trace.mean_duration().mean()) / trace.mean_duration().mean()
        assert rel < 0.06, (spec, durations.mean(), trace.mean_duration().mean())


def test_halfnormal_is_flsim_abs_normal_and_fedrevive_matches_the_paper():
    t = make_trace("halfnormal:scale=2", 5, 0)
    assert t.compute_mean[0] == pytest.approx(2 * math.sqrt(2 / math.pi))
    fr = make_trace("fedrevive", 4000, 0)
    shares = [np.mean(fr.compute_mean == m) for m in (1.0, 1.3, 1.6)]
    assert shares == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    assert set(fr.upload_mean) == {0.15, 0.25} and np.mean(fr.upload_mean == 0.15) == pytest.approx(0.5, abs=0.03)
    assert (fr.download == 0.1).all() and (fr.upload_spread == 0.02).all() and set(fr.jitter) == {"exponential"}
    sh = make_trace("fedrevive-shifted", 100, 0)
    assert (sh.compute_mean == 0.1).all() and (sh.download == 0.02).all() and set(sh.upload_mean) == {0.05, 0.10}


def test_per_job_jitter_is_keyed_by_seed_client_and_job():
    t = make_trace("pareto", 10, 0)
    assert t.duration(3, 7, 11) == t.duration(3, 7, 11)
    assert len({t.duration(3, k, 11) for k in range(20)}) == 20
    assert t.duration(3, 7, 11) != t.duration(3, 7, 12) != t.duration(4, 7, 12)


def test_job_sequence_is_the_same_for_every_registered_method(digits):
    """Every method's run builds its schedule from the same trace + seed: asynchronous
    methods get the identical job sequence, synchronous ones the same per-job durations."""
    for trace in ("fedrevive", "pareto:shape=1.3", "intertwined:classes=2,slow=3"):
        by_mode = {}
        data = None
        for name, cls in methods().items():
            cfg = tiny_config(name, seed=5, trace=trace, total_arrivals=60)
            data = data or digits.load(cfg["setup"], 5)
            sched = build_schedule(cfg, cls.synchronous, build_trace(cfg, data))
            by_mode.setdefault(cls.synchronous, []).append((name, sched))
        assert len(by_mode[False]) >= 2
        for group in by_mode.values():
            first = group[0][1]
            for name, sched in group[1:]:
                assert sched.hash == first.hash and jobs(sched) == jobs(first), (trace, name)
        if True in by_mode:
            a, s = by_mode[False][0][1], by_mode[True][0][1]
            dur = lambda x: {(c, k): t1 - t0 for c, k, t0, t1, _ in jobs(x)}
            common = set(dur(a)) & set(dur(s))
            assert common and all(dur(a)[key] == pytest.approx(dur(s)[key]) for key in common)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_saved_and_loaded_trace_gives_the_same_schedule(tmp_path, suffix):
    if suffix == "parquet":
        pytest.importorskip("pyarrow")
    for i, spec in enumerate(KINDS):
        trace = make_trace(spec, 30, seed=2, class_counts=COUNTS)
        path = write_trace(trace, tmp_path / f"t{i}.{suffix}")
        back = read_trace(path)
        assert back.kind == trace.kind and back.params == trace.params and back.seed == 2
        for sync in (False, True):
            a = make_schedule(trace, 6, 150, seed=9, synchronous=sync)
            b = make_schedule(back, 6, 150, seed=9, synchronous=sync)
            assert a.hash == b.hash and jobs(a) == jobs(b), spec
        # a file path is a trace spec too
        assert make_schedule(make_trace(str(path), 30, seed=9), 6, 150, seed=9).hash == \
            make_schedule(trace, 6, 150, seed=9).hash


def test_intertwined_delays_the_holders_of_the_chosen_classes():
    counts = np.zeros((12, 4), dtype=int)
    counts[:, 0] = 5
    counts[[2, 9, 5], 3] = [50, 40, 30]          # most of class 3
    counts[[7, 1], 1] = [45, 35]                 # most of class 1
    t = make_trace("intertwined:classes=3/1,slow=4,delay_min=10,delay_max=40,base=constant", 12, 0, counts)
    slow = set(np.flatnonzero(t.extra_delay > 0))
    assert slow == {2, 9, 7, 1} and t.meta["slow_clients"] == [1, 2, 7, 9]
    assert t.meta["round_seconds"] == 1.0
    assert ((t.extra_delay[list(slow)] >= 10) & (t.extra_delay[list(slow)] <= 40)).all()
    assert t.duration(2, 0, 0) == pytest.approx(1.0 + t.extra_delay[2]) and t.duration(0, 0, 0) == 1.0
    # in a schedule the slow clients' updates arrive very stale
    s = make_schedule(t, 6, 400, seed=0)
    tau = np.arange(len(s)) - s.dispatched_after
    is_slow = np.isin(s.client, list(slow))
    assert is_slow.any() and tau[is_slow].mean() > 10 * tau[~is_slow].mean()
    assert slow_classes("intertwined:classes=3/1,slow=4") == [3, 1]
    assert slow_classes("intertwined") == [0] and slow_classes("pareto:shape=2") == []
    with pytest.raises(UserError, match="class counts"):
        make_trace("intertwined", 12, 0)
    with pytest.raises(UserError, match="class 9 does not exist"):
        make_trace("intertwined:classes=9", 12, 0, counts)
    with pytest.raises(UserError, match="unknown base"):
        make_trace("intertwined:base=zipf", 12, 0, counts)


def test_intertwined_passes_clashing_keys_to_its_base_by_prefix():
    """tiers and intertwined both have a ``slow``: unprefixed it is intertwined's (the
    number of delayed clients), ``base.slow`` is the tiers' slow compute time."""
    counts = np.ones((20, 3), dtype=int)
    t = make_trace("intertwined:classes=0,slow=2,base=tiers,base.slow=9,slow_frac=0.5,jitter=constant", 20, 0, counts)
    assert sorted(set(t.compute_mean)) == [1.0, 9.0] and (t.compute_mean == 9.0).sum() == 10
    assert (t.extra_delay > 0).sum() == 2
    assert t.params["slow"] == 2 and t.params["base.slow"] == 9.0 and t.params["slow_frac"] == 0.5
    default = make_trace("intertwined:classes=0,slow=2,base=tiers", 20, 0, counts)
    assert default.params["slow"] == 2 and default.params["base.slow"] == 5.0   # the tiers default


def test_intertwined_file_keeps_its_slow_classes(tmp_path):
    path = write_trace(make_trace("intertwined:classes=4/2,slow=3", 30, 0, COUNTS), tmp_path / "i.csv")
    assert slow_classes(str(path)) == [4, 2]
    assert slow_classes(str(write_trace(make_trace("fedrevive", 5, 0), tmp_path / "f.csv"))) == []


def test_class_counts_of_a_task(digits):
    cfg = tiny_config("fedbuff", seed=1)
    data = digits.load(cfg["setup"], 1)
    counts = class_counts(data)
    assert counts.shape == (len(data.clients), data.num_classes)
    assert counts.sum() == sum(len(c) for c in data.clients)


def _windowed(windows, period=10.0):
    n = len(windows)
    return Trace(kind="test", params={}, compute_mean=np.full(n, 1.0), download=np.zeros(n),
                 upload_mean=np.zeros(n), upload_spread=np.zeros(n), jitter="exponential",
                 availability=tuple(None if w is None else np.array(w, dtype=float) for w in windows),
                 period=period)


def test_availability_windows_gate_dispatch():
    t = _windowed([[(0, 2)], [(3, 5)], [(6, 9)], None])
    assert t.available(0, 1.0) and not t.available(0, 2.5) and t.next_available(0, 2.5) == 10.0
    assert t.next_available(2, 14.0) == 16.0 and t.available(3, 123.0)
    s = make_schedule(t, 2, 80, seed=0)
    for c, t0 in zip(s.client, s.dispatch_time):
        assert t.available(int(c), float(t0)), (c, t0)
    assert s.max_in_flight() <= 2 and len(set(s.client.tolist())) == 4
    sync = make_schedule(t, 2, 40, seed=0, synchronous=True)
    starts, sizes = np.unique(sync.dispatch_time, return_counts=True)
    assert (sizes <= 2).all() and (sizes == 2).any()       # a round's dropped jobs never arrive
    assert all(t.available(int(c), float(t0)) for c, t0 in zip(sync.client, sync.dispatch_time))
    never = _windowed([[(0, 1)], []], period=0.0)
    with pytest.raises(UserError, match="ever online again"):
        make_schedule(never, 1, 50, seed=0)
    apart = _windowed([[(0, 1)], [(2, 3)]])
    with pytest.raises(UserError, match="never have 2 clients online"):
        make_schedule(apart, 2, 10, seed=0, synchronous=True)


def test_jobs_whose_client_goes_offline_are_dropped():
    """Client 0 is online for 0.5 s of every 10 and its jobs take 1 s: each is dropped
    when it goes offline, frees its slot then, and never arrives; client 1 is always on."""
    def trace(windows, other=None):
        return Trace(kind="test", params={}, compute_mean=np.ones(2), download=np.zeros(2),
                     upload_mean=np.zeros(2), upload_spread=np.zeros(2), jitter="constant",
                     availability=(np.array(windows, dtype=float), other), period=10.0)
    short = trace([(0, 0.5)])
    assert short.online_until(0, 0.2) == 0.5 and short.online_until(1, 3.0) == math.inf
    s = make_schedule(short, 2, 25, seed=0)
    assert (s.client == 1).all() and s.job_index.tolist() == list(range(25))
    assert s.dropped == 3                    # client 0 started at 0, 10 and 20
    assert s.arrival_time[-1] == 25.0        # client 1 never waited for a dropped slot
    fits = trace([(0, 5)])                   # jobs at 0..4 end by 5, the window's (inclusive) end
    s2 = make_schedule(fits, 2, 20, seed=0)
    mine = s2.client == 0
    assert s2.dropped == 0 and mine.sum() >= 5 and s2.hash != s.hash
    assert (s2.dispatch_time[mine] % 10 <= 4).all() and (s2.arrival_time[mine] - s2.dispatch_time[mine] == 1).all()
    sync = make_schedule(short, 2, 6, seed=0, synchronous=True)
    # each round: client 0 drops at 0.5 s, client 1 arrives at 1 s; rounds start when both are online
    assert sync.client.tolist() == [1] * 6 and sync.dropped == 6
    assert sync.dispatch_time.tolist() == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    never = trace([(0, 0.5)], np.array([(0, 0.5)]))   # no job ever fits a window
    with pytest.raises(UserError, match="dropped because their clients went offline"):
        make_schedule(never, 2, 5, seed=0)


def test_online_until_joins_touching_and_wrapping_windows():
    t = _windowed([[(0, 4), (4, 10)], [(0, 3), (8, 10)], [(2, 5)], None])
    assert t.online_until(0, 123.0) == math.inf           # touching windows cover the whole period
    assert t.online_until(1, 9.0) == 13.0                  # [8, 10] runs into the next period's [0, 3]
    assert t.online_until(1, 1001.0) == 1003.0
    assert t.online_until(2, 4.0) == 5.0 and t.online_until(2, 6.0) == 6.0   # offline: leaves at once
    assert t.online_until(3, 7.0) == math.inf


def test_zero_length_windows_never_start_a_job():
    """A window [s, s] lets no job start (it would drop at once); with nothing else the
    schedule stops with a clear error instead of waking forever."""
    only_points = _windowed([[(1, 1)], [(2, 2)]])
    assert only_points.next_available(0, 0.5) == 1.0 and only_points.next_available(0, 0.5, startable=True) == math.inf
    with pytest.raises(UserError, match="ever online again"):
        make_schedule(only_points, 1, 5, seed=0)
    mixed = _windowed([[(1, 1), (3, 6)], None])
    assert mixed.next_available(0, 0.5, startable=True) == 3.0
    s = make_schedule(mixed, 2, 30, seed=0)
    assert all(3 <= t0 % 10 < 6 for c, t0 in zip(s.client, s.dispatch_time) if c == 0)


def test_every_kept_job_arrives_before_its_client_goes_offline():
    rng = np.random.default_rng(0)
    windows = [[tuple(sorted(rng.uniform(0, 10, 2)))] for _ in range(7)] + [None]
    t = _windowed(windows)
    for sync in (False, True):
        s = make_schedule(t, 3, 150, seed=1, synchronous=sync)
        assert s.dropped > 0
        for c, t0, t1 in zip(s.client, s.dispatch_time, s.arrival_time):
            assert t.available(int(c), float(t0)) and t1 <= t.online_until(int(c), float(t0))


@pytest.mark.parametrize("shape", [0, -1, 0.5, 1])
def test_pareto_shape_must_give_a_finite_mean(shape):
    """The pareto kind is set by its mean, which is finite only for shape > 1: one reason,
    never a contradiction such as 'must be > 1 ... must be > 0', nor the generic '>= 0'."""
    with pytest.raises(UserError, match=f"shape={float(shape)}, but .* a Pareto mean is finite only for "
                                        "shape > 1") as err:
        make_trace(f"pareto:shape={shape}", 5, 0)
    assert "> 0" not in str(err.value).replace("> 1", "")
    assert ">= 0" not in str(err.value) and "fix:" in str(err.value)


def test_pareto_jitter_has_mean_one_even_close_to_the_bound():
    t = make_trace("pareto:shape=3,mean=2", 1, 0)
    draws = np.array([t._jitter(0, np.random.default_rng(k)) for k in range(20000)])
    assert draws.min() >= 2 / 3 and draws.mean() == pytest.approx(1.0, rel=0.03)   # scale (α−1)/α
    near = make_trace("pareto:shape=1.05", 1, 0)
    assert min(near._jitter(0, np.random.default_rng(k)) for k in range(1000)) > 0
