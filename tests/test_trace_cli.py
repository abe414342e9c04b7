import collections
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from asyncfl_bench.cli import app
from asyncfl_bench.errors import UserError
from asyncfl_bench.traces.fedscale import fedscale_round_seconds, load_plain_pickle
from asyncfl_bench.results.report import schedule_table
from asyncfl_bench.traces.schedule import make_schedule
from asyncfl_bench.traces.generators import make_trace
from asyncfl_bench.traces.file import read_trace, write_trace

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def _good_csv(tmp_path):
    return write_trace(make_trace("fedrevive", 6, 0), tmp_path / "good.csv")


def _edit(path, fn, name):
    lines = path.read_text().splitlines()
    out = path.with_name(name)
    out.write_text("\n".join(fn(lines)) + "\n")
    return out


def test_make_show_schedule_round_trip(tmp_path):
    res = invoke("trace", "make", "--kind", "pareto:shape=1.5", "--clients", 40, "--seed", 3,
                 "--out", tmp_path / "p.csv")
    assert res.exit_code == 0, res.output
    text = (tmp_path / "p.csv").read_text()
    assert text.startswith("# asyncfl-bench-trace=1\n# kind=\"pareto\"\n") and "client,compute_mean_s," in text
    res = invoke("trace", "show", tmp_path / "p.csv", "--concurrency", 8, "--arrivals", 300,
                 "--out", tmp_path / "plots")
    assert res.exit_code == 0, res.output
    assert "staleness" in res.output
    for name in ("p-durations.png", "p-staleness.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    res = invoke("trace", "schedule", tmp_path / "p.csv", "--concurrency", 8, "--arrivals", 300,
                 "--seed", 3, "--out", tmp_path / "jobs.csv")
    assert res.exit_code == 0, res.output
    jobs = pd.read_csv(tmp_path / "jobs.csv")
    expected = make_schedule(make_trace("pareto:shape=1.5", 40, 3), 8, 300, seed=3)
    assert expected.hash in res.output
    assert jobs["client"].tolist() == expected.client.tolist()
    assert np.allclose(jobs["arrival_time"], expected.arrival_time)
    assert (jobs["staleness"] == jobs["arrival"] - jobs["dispatched_after"]).all()


def test_mean_staleness_follows_littles_law():
    # with M jobs always in flight and one update per arrival, E[τ] ≈ M − 1
    from asyncfl_bench.traces.summary import trace_summary
    for kind in ("fedrevive", "pareto", "exponential"):
        t = make_trace(kind, 100, 0)
        s = trace_summary(t, make_schedule(t, 20, 4000, seed=0))
        assert s["staleness"]["mean"] == pytest.approx(19, abs=1.5), kind
        assert s["staleness"]["p95"] > s["staleness"]["mean"]


def _drop(line, i):
    cells = line.split(",")
    return ",".join(cells[:i] + cells[i + 1:])


# lines[4] is the column header, lines[5] client 0 (file line 6)
@pytest.mark.parametrize("edit, where", [
    (lambda ls: ls[:4] + [_drop(l, 4) for l in ls[4:]], "column 'download_s' is missing"),
    (lambda ls: ls[:7] + [ls[7].replace(",0.1,", ",-0.1,", 1)] + ls[8:],
     "row 3, line 8, column 'download_s': -0.1 is negative"),
    (lambda ls: ["# asyncfl-bench-trace=9"] + ls[1:], "key 'asyncfl-bench-trace': version 9 is not supported"),
    (lambda ls: ls[:5] + [ls[5].replace("exponential", "zipf")] + ls[6:], "row 1, line 6, column 'jitter'"),
    (lambda ls: ls[:6] + [ls[6].replace("1,", "4,", 1)] + ls[7:], "row 2, line 7, column 'client'"),
    (lambda ls: ls[:6] + [ls[6].replace(",0.1,", ",fast,", 1)] + ls[7:], "row 2, line 7, column 'download_s'"),
    (lambda ls: ls[:4] + [ls[4] + ",speed"] + [l + ",1" for l in ls[5:]], "unknown column 'speed'"),
    (lambda ls: ls[4:], "not an asyncfl-bench trace"),
])
def test_malformed_trace_files_exit_2_naming_row_and_column(tmp_path, edit, where):
    good = _good_csv(tmp_path)
    lines = good.read_text().splitlines()
    assert lines[4].startswith("client,") and len(lines) == 11
    bad = _edit(good, edit, "bad.csv")
    for args in (["trace", "show", bad], ["run", "--trace", bad, "--results", tmp_path / "r"]):
        res = invoke(*args)
        assert res.exit_code == 2, res.output
        assert where in res.output and "Traceback" not in res.output, res.output
    with pytest.raises(UserError, match="bad.csv"):
        read_trace(bad)


def test_parquet_is_validated_too(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.read_csv(_good_csv(tmp_path), comment="#")
    frame.loc[4, "upload_mean_s"] = -1.0
    from asyncfl_bench.traces.file import write_table
    path = write_table(frame, {"asyncfl-bench-trace": 1, "kind": "x", "params": {}, "seed": 0}, tmp_path / "b.parquet")
    res = invoke("trace", "show", path)
    assert res.exit_code == 2 and "row 5, column 'upload_mean_s': -1.0 is negative" in res.output, res.output


def _fedscale_pickles(tmp_path):
    devices = {1: {"computation": 20.0, "communication": 1000.0},
               2: {"computation": 150.5, "communication": 250.0},
               3: {"computation": 60.0, "communication": 4000.0}}
    behave = {1: {"duration": 300, "inactive": [40, 200], "finish_time": 300, "active": [0, 100], "model": "a"},
              2: {"duration": 300, "inactive": [290], "finish_time": 300, "active": [50], "model": "b"}}
    (tmp_path / "device.pkl").write_bytes(pickle.dumps(devices, protocol=4))
    (tmp_path / "behave.pkl").write_bytes(pickle.dumps(behave, protocol=2))
    return devices


def test_fedscale_import_through_the_restricted_reader(tmp_path):
    devices = _fedscale_pickles(tmp_path)
    res = invoke("trace", "import", tmp_path / "device.pkl", "--behaviour", tmp_path / "behave.pkl",
                 "--clients", 5, "--batch-size", 10, "--local-steps", 4, "--model-kbit", 500,
                 "--out", tmp_path / "fs.csv")
    assert res.exit_code == 0, res.output
    t = read_trace(tmp_path / "fs.csv")
    order = [1, 2, 3, 1, 2]                       # sorted ids, wrapping around
    for c, key in enumerate(order):
        d = devices[key]
        # a job lasts exactly FedScale's round time (constant jitter)
        assert t.duration(c, 0, 0) == pytest.approx(
            fedscale_round_seconds(d["computation"], d["communication"], 10, 4, 500))
    assert t.available(0, 10) and not t.available(0, 50) and t.available(0, 150) and t.available(0, 310)
    assert not t.available(1, 10) and t.next_available(1, 10) == 50 and t.available(1, 360)
    assert t.meta["samples_per_job"] == 40 and t.meta["model_kbit"] == 500
    assert "compute_s_per_sample" in (tmp_path / "fs.csv").read_text()
    assert make_schedule(t, 2, 30, seed=0).hash        # schedules with the windows


class Sneaky:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("payload, name", [
    (Sneaky(), "posix.system"),
    ({1: collections.OrderedDict(computation=1.0, communication=2.0)}, "collections.OrderedDict"),
    ({1: {"computation": np.float64(3.0), "communication": 1.0}}, "numpy"),
])
def test_pickles_with_other_objects_are_refused(tmp_path, payload, name):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError, match="refused object type"):
        load_plain_pickle(path)
    res = invoke("trace", "import", path, "--clients", 2, "--out", tmp_path / "x.csv")
    assert res.exit_code == 2 and "refused object type" in res.output and name.split(".")[0] in res.output
    assert not (tmp_path / "x.csv").exists()


def test_fedscale_structure_errors_are_clear(tmp_path):
    (tmp_path / "d.pkl").write_bytes(pickle.dumps({1: {"computation": -1.0, "communication": 5.0}}))
    res = invoke("trace", "import", tmp_path / "d.pkl", "--clients", 2, "--out", tmp_path / "x.csv")
    assert res.exit_code == 2 and "client 1: 'computation' must be a >= 0 number" in res.output


def test_intertwined_make_needs_a_task(tmp_path):
    res = invoke("trace", "make", "--kind", "intertwined:classes=3", "--clients", 10, "--out", tmp_path / "i.csv")
    assert res.exit_code == 2 and "--task" in res.output
    res = invoke("trace", "make", "--kind", "intertwined:classes=3,slow=2", "--clients", 10, "--task", "digits",
                 "--out", tmp_path / "i.csv")
    assert res.exit_code == 0, res.output
    t = read_trace(tmp_path / "i.csv")
    assert (t.extra_delay > 0).sum() == 2 and t.meta["slow_clients"]


def test_report_warns_when_async_methods_ran_on_different_schedules():
    runs = pd.DataFrame([
        {"task": "digits", "preset": "ci", "seed": 0, "method": "fedbuff", "schedule_hash": "aaa"},
        {"task": "digits", "preset": "ci", "seed": 0, "method": "fedasync", "schedule_hash": "aaa"},
        {"task": "digits", "preset": "ci", "seed": 0, "method": "fedavg-sync", "schedule_hash": "sss"},
        {"task": "digits", "preset": "ci", "seed": 1, "method": "fedbuff", "schedule_hash": "bbb"},
        {"task": "digits", "preset": "ci", "seed": 1, "method": "fedasync", "schedule_hash": "ccc"},
    ])
    table, warnings = schedule_table(runs)
    assert len(table) == 5 and set(table["schedule_hash"]) == {"aaa", "bbb", "ccc", "sss"}
    assert len(warnings) == 1 and "seed 1" in warnings[0] and "fedasync" in warnings[0] and "bbb" in warnings[0]


def test_run_with_a_trace_file_records_it(tmp_path):
    trace = write_trace(make_trace("pareto", 8, 0), tmp_path / "t.csv")
    res = invoke("run", "--method", "fedbuff,fedasync", "--trace", trace, "--set", "total_arrivals=12",
                 "--set", "num_clients=8", "--set", "concurrency=3", "--set", "eval_every=6",
                 "--results", tmp_path / "r")
    assert res.exit_code == 0, res.output
    configs = [json.loads(p.read_text()) for p in (tmp_path / "r").rglob("config.json")]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "r").rglob("summary.json")]
    assert {c["setup"]["trace"] for c in configs} == {str(trace.resolve())}
    expected = make_schedule(read_trace(trace), 3, 12, seed=0).hash
    assert {s["schedule_hash"] for s in summaries} == {expected}
    res = invoke("report", "--results", tmp_path / "r")
    assert res.exit_code == 0 and "warning" not in res.output, res.output
    listed = pd.read_csv(tmp_path / "r" / "report" / "schedules.csv")
    assert sorted(listed["method"]) == ["fedasync", "fedbuff"] and set(listed["schedule_hash"]) == {expected}
    board = pd.read_csv(tmp_path / "r" / "report" / "leaderboard.csv")
    assert set(board["schedule"]) == {expected}
    res = invoke("run", "--trace", tmp_path / "t.csv", "--set", "num_clients=9", "--results", tmp_path / "r")
    assert res.exit_code == 2 and "--set num_clients=8" in res.output


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    res = invoke("trace", "make", "--kind", "fedrevive", "--clients", 4, "--out", tmp_path / "t.parquet")
    assert res.exit_code == 2 and "pip install pyarrow" in res.output, res.output
