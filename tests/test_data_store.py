"""The cache, `data status` / `data prepare`, and runs without data or network."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from asyncfl_bench.cli import app
from asyncfl_bench.data import load_corpus, prepare, status
from asyncfl_bench.data.store import KNOWN, hub_reachable
from asyncfl_bench.errors import UserError

runner = CliRunner()


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ASYNCFL_BENCH_OFFLINE", "1")


def _leaf(root):
    for split, users in (("train", {"a": [1, 2, 3, 4], "b": [5, 6], "c": [7, 7, 7]}), ("test", {"a": [1], "b": [5]})):
        (root / split).mkdir(parents=True)
        doc = {"users": list(users), "num_samples": [len(v) for v in users.values()],
               "user_data": {u: {"x": [[0.5] * 784 for _ in v], "y": v} for u, v in users.items()}}
        (root / split / "shard.json").write_text(json.dumps(doc))
    return root


def test_status_without_data_or_network_shows_every_task_missing(tmp_path):
    assert not hub_reachable()
    rows = status(None)
    assert [r["task"] for r in rows] == list(KNOWN) == ["cifar10", "cifar100", "femnist", "20newsgroups"]
    assert {r["found"] for r in rows} == {"missing"}
    res = runner.invoke(app, ["data", "status"])
    assert res.exit_code == 0 and res.output.count("missing") >= 4
    assert "data prepare femnist" in res.output and "unreachable" in res.output


def test_run_without_data_exits_2_with_the_fix_on_one_line(tmp_path):
    res = runner.invoke(app, ["run", "--task", "femnist", "--method", "fedbuff", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2
    line = " ".join(res.output.split())
    assert "femnist is not prepared" in line and "asyncfl-bench data prepare femnist" in line and "--data-dir" in line
    assert "Traceback" not in res.output and not (tmp_path / "r").exists()


def test_prepare_offline_names_the_local_copy_route():
    with pytest.raises(UserError, match=r"no network.*data prepare cifar10 --from PATH"):
        prepare("cifar10")
    res = runner.invoke(app, ["data", "prepare", "20newsgroups"])
    assert res.exit_code == 2 and "--from" in res.output


def test_prepare_from_a_local_copy_then_runs_need_no_data_dir(tmp_path):
    src = _leaf(tmp_path / "femnist")
    res = runner.invoke(app, ["data", "prepare", "femnist", "--from", str(src)])
    assert res.exit_code == 0, res.output
    assert "9 train / 2 test" in " ".join(res.output.split())
    c = load_corpus("femnist", None)                  # from the cache, Arrow-backed
    assert c.train.x.shape == (9, 1, 28, 28) and c.train.x.max() == 128
    assert np.bincount(c.train.group).tolist() == [4, 2, 3]
    rows = {r["task"]: r for r in status(None)}
    assert rows["femnist"]["found"] == "prepared" and rows["femnist"]["samples"] == "9 / 2"


def test_data_dir_copy_is_imported_once_and_reimported_when_it_changes(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    _leaf(data_dir / "femnist")
    assert status(data_dir)[2]["found"] == "local copy"
    load_corpus("femnist", data_dir)
    from asyncfl_bench.data import store
    calls = []
    monkeypatch.setattr(store, "read_any", lambda *a, **k: calls.append(a) or pytest.fail("re-read"))
    assert len(load_corpus("femnist", data_dir).train) == 9   # cache hit: no re-parse
    assert status(data_dir)[2]["found"] == "prepared"


def test_unknown_data_set_and_missing_from_path(tmp_path):
    with pytest.raises(UserError, match="unknown data set 'mnist'"):
        prepare("mnist")
    with pytest.raises(UserError, match="no such file"):
        prepare("femnist", tmp_path / "nope")


def test_hub_reachable_asks_the_configured_endpoint_through_huggingface_hub(monkeypatch):
    """A mirror (HF_ENDPOINT) that answers counts as network, whatever status it gives; an
    endpoint nobody listens on does not; the offline switches win over both."""
    import http.server
    import socket
    import threading

    seen = []

    class Mirror(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            seen.append(self.path)
            self.send_response(404)   # an answer, even an error, means the hub is there
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Mirror)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("ASYNCFL_BENCH_OFFLINE")
    for proxy in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_reachable() and seen == ["/api/datasets"]
        with socket.socket() as s:   # a port with nobody behind it
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed}")
        assert not hub_reachable(timeout=2)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert not hub_reachable() and len(seen) == 1
    finally:
        server.shutdown()
