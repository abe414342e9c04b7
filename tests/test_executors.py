"""--jobs N and --executor ray write the same results as an in-process run with the
same thread count; --threads is recorded and --jobs never oversubscribes the cores."""
import pandas as pd
import pytest
from typer.testing import CliRunner

from asyncfl_bench.cli import app

# one thread everywhere: CPU float reductions depend on the thread count, and --jobs 2
# alone would give each worker cores ÷ 2
SWEEP = ["run", "--method", "fedbuff,fedasync", "--seeds", "0,1", "--set", "total_arrivals=20",
         "--set", "num_clients=8", "--set", "concurrency=3", "--set", "eval_every=10", "--threads", "1"]


def _curves(root):
    return {p.relative_to(root): pd.read_csv(p) for p in sorted(root.glob("digits/*/*/curve.csv"))}


def _check_same(tmp_path, extra):
    runner = CliRunner()
    assert runner.invoke(app, SWEEP + ["--results", str(tmp_path / "a")]).exit_code == 0
    res = runner.invoke(app, SWEEP + ["--results", str(tmp_path / "b"), *extra])
    assert res.exit_code == 0, res.output
    a, b = _curves(tmp_path / "a"), _curves(tmp_path / "b")
    assert len(a) == 4 and a.keys() == b.keys()
    for key in a:
        pd.testing.assert_frame_equal(a[key], b[key], check_exact=True)


def test_local_worker_processes(tmp_path):
    _check_same(tmp_path, ["--jobs", "2"])


def test_ray_local_cluster_two_methods_two_seeds(tmp_path):
    pytest.importorskip("ray")
    _check_same(tmp_path, ["--executor", "ray"])


def test_a_reused_run_trained_on_another_path_says_so(tmp_path):
    """The training path is not in the run id (batched and sequential agree within float
    tolerance), so a finished run is reused, but the status names the path it ran."""
    from asyncfl_bench.simulation.executors import run_configs
    from asyncfl_bench.simulation.run import RunOptions
    from asyncfl_bench.training.path import BatchClients
    from conftest import tiny_config

    cfg = tiny_config("fedbuff", concurrency=3)
    [(_, first, status)] = run_configs([cfg], RunOptions(tmp_path, batch_clients=BatchClients.parse("off")))
    assert status == "ran" and first["training"]["requested"] == "off"
    [(_, _, same)] = run_configs([cfg], RunOptions(tmp_path, batch_clients=BatchClients.parse("off")))
    assert same == "skipped (done)"
    [(_, _, other)] = run_configs([cfg], RunOptions(tmp_path, batch_clients=BatchClients.parse("3")))
    assert other == "skipped (done; trained with --batch-clients off: sequential)"


def test_threads_per_worker_never_oversubscribe(monkeypatch):
    from asyncfl_bench.errors import UserError
    from asyncfl_bench.simulation import executors

    monkeypatch.setattr(executors, "usable_cores", lambda: 8)
    assert executors.threads_per_run(0, 2) == 4
    assert executors.threads_per_run(0, 3) == 2
    assert executors.threads_per_run(0, 16) == 1    # more workers than cores: one thread each
    assert executors.threads_per_run(3, 2) == 3     # told otherwise
    with pytest.raises(UserError, match="--threads"):
        executors.threads_per_run(-1, 1)


def test_summary_records_the_thread_count(tmp_path):
    import json

    import torch

    before = torch.get_num_threads()
    try:
        res = CliRunner().invoke(app, ["run", "--method", "fedbuff", "--set", "total_arrivals=20",
                                       "--set", "num_clients=8", "--set", "concurrency=3", "--threads", "1",
                                       "--results", str(tmp_path)])
        assert res.exit_code == 0, res.output
    finally:
        torch.set_num_threads(before)
    [summary] = list(tmp_path.glob("digits/fedbuff/*/summary.json"))
    summary = json.loads(summary.read_text())
    assert summary["threads"] == 1
    assert summary["machine"]["torch"] == torch.__version__   # the report's "Machine and versions"
