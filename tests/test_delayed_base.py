"""Delayed-base schedules (Wang & Gao's intertwined setting): the chosen clients report at the
normal rate but train from the model ``lag`` rounds old; the schedule, bases included, is one
for every method."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, class_counts, execute
from asyncfl_bench.traces.file import read_trace, trace_frame, trace_header, write_table, write_trace
from asyncfl_bench.traces.generators import make_trace
from asyncfl_bench.traces.schedule import make_schedule
from conftest import tiny_config

LAG = "intertwined:classes=0,slow=2,delay_min=2,delay_max=3,mode=lag,base=exponential"


def _counts(n=8, classes=3):
    counts = np.ones((n, classes), dtype=np.int64)
    counts[[5, 2], 0] = [50, 40]          # clients 5 and 2 hold most of class 0
    return counts


def test_lagged_clients_keep_their_timing_and_take_the_stated_older_base():
    trace = make_trace(LAG, 8, 0, _counts())
    assert trace.meta["slow_clients"] == [2, 5]
    assert (trace.extra_delay == 0).all()
    assert ((trace.base_lag[[2, 5]] >= 2) & (trace.base_lag[[2, 5]] <= 3)).all()
    assert (np.delete(trace.base_lag, [2, 5]) == 0).all()
    lagged = make_schedule(trace, 4, 200, seed=0)
    plain = make_schedule(dataclasses.replace(trace, base_lag=0.0), 4, 200, seed=0)
    # the same jobs at the same times, in the same order: only the bases differ
    for a in ("client", "job_index", "dispatch_time", "arrival_time", "dispatched_after"):
        assert np.array_equal(getattr(lagged, a), getattr(plain, a)), a
    assert plain.base_after is None and lagged.hash != plain.hash
    lag_arrivals = np.rint(trace.base_lag * 4).astype(int)[lagged.client]
    assert np.array_equal(lagged.bases, np.maximum(lagged.dispatched_after - lag_arrivals, 0))
    slow = np.isin(lagged.client, [2, 5])
    assert (lagged.bases[~slow] == lagged.dispatched_after[~slow]).all()
    assert (lagged.bases[slow] < lagged.dispatched_after[slow]).sum() > 10


def test_the_lag_survives_a_trace_file_and_bad_values_are_refused(tmp_path):
    trace = make_trace(LAG, 8, 0, _counts())
    path = write_trace(trace, tmp_path / "lag.csv")
    back = read_trace(path)
    assert np.array_equal(back.base_lag, trace.base_lag)
    assert make_schedule(back, 4, 100, seed=1).hash == make_schedule(trace, 4, 100, seed=1).hash
    frame = trace_frame(trace)
    frame.loc[2, "base_lag_rounds"] = -1.0
    write_table(frame, trace_header(trace), tmp_path / "bad.csv")
    with pytest.raises(UserError, match="base_lag_rounds"):
        read_trace(tmp_path / "bad.csv")
    with pytest.raises(UserError, match="mode"):
        make_trace(LAG.replace("mode=lag", "mode=late"), 8, 0, _counts())


@pytest.mark.parametrize("method, per_version", [("fedasync", 1), ("fedbuff", 5)])
def test_every_method_sees_one_schedule_and_lagged_jobs_train_from_the_stated_version(tmp_path, digits,
                                                                                          method, per_version):
    """A per-arrival method (FedAsync) and a buffered one (FedBuff, K = 5) on the same lagged
    schedule: the same arrivals, and each job's base version is the method's version after
    ``base_after`` arrivals, so its staleness is the version now less that one."""
    trace = "intertwined:classes=3,slow=4,delay_min=2,delay_max=3,mode=lag,base=exponential"
    cfg = tiny_config(method, seed=1, trace=trace, total_arrivals=60)
    data = digits.load(cfg["setup"], 1)
    summary, _ = execute(cfg, digits, data, RunOptions(tmp_path))
    folder = tmp_path / "digits" / method / summary["run_id"]
    arrivals = pd.read_csv(folder / "arrivals.csv")
    t = make_trace(trace, cfg["setup"]["num_clients"], 1, class_counts(data))
    sched = make_schedule(t, cfg["setup"]["concurrency"], 60, seed=1)
    assert summary["schedule_hash"] == sched.hash
    assert np.array_equal(arrivals["client"], sched.client)
    expected_base = sched.bases // per_version
    assert np.array_equal(arrivals["base_version"], expected_base)
    # the server holds version i // K when arrival i (from 0) comes in
    assert np.array_equal(arrivals["staleness"], np.arange(60) // per_version - expected_base)
    lagged = sched.bases != sched.dispatched_after
    assert lagged.sum() >= 3


def test_a_lagged_run_resumes_bit_for_bit(tmp_path, one_thread):
    """The versions held for lagged jobs not yet dispatched are part of the checkpoint."""
    from test_resume import RESUME_SETUP, _execute

    from asyncfl_bench.config.registry import get_method, methods
    from asyncfl_bench.config.settings import resolve
    from asyncfl_bench.tasks.digits import Digits
    task = Digits()
    trace = "intertwined:classes=3,slow=3,delay_min=1,delay_max=2,mode=lag,base=exponential"
    config = resolve(task, "ci", get_method("fedasync"), 0, "cpu", {**RESUME_SETUP, "trace": trace},
                     list(methods()))
    data = task.load(config["setup"], 0)
    curve, arrivals, state = _execute(config, task, data, tmp_path / "straight")
    sched = make_schedule(make_trace(trace, 8, 0, class_counts(data)), 4, 20, seed=0)
    kills = (3, 7, 12, 16)
    # at some kill point a lagged job's base is already held but the job not yet dispatched
    assert any(((sched.bases <= k) & (k < sched.dispatched_after)).any() for k in kills)
    for k in kills:
        assert _execute(config, task, data, tmp_path / "killed", kill_after=k) is None
    resumed, resumed_arrivals, resumed_state = _execute(config, task, data, tmp_path / "killed")
    pd.testing.assert_frame_equal(resumed, curve, check_exact=True)
    pd.testing.assert_frame_equal(resumed_arrivals, arrivals, check_exact=True)
    assert (resumed_state["params"] == state["params"]).all()
