"""The intertwined preset: slow clients hold the slow classes; summary and report show
accuracy on those classes next to overall accuracy."""
import json

import numpy as np
import pandas as pd

from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.results.report import build_report
from asyncfl_bench.simulation.run import (
    RunOptions,
    build_schedule,
    build_trace,
    class_counts,
    execute,
    slow_class_accuracy,
)
from asyncfl_bench.traces.generators import make_trace, slow_classes

TINY = {"total_arrivals": "30", "eval_every": "10"}


def _config(method, seed=0, preset="intertwined", **over):
    return resolve(_digits(), preset, get_method(method), seed, "cpu", {**TINY, **over}, list(methods()))


def _digits():
    from asyncfl_bench.tasks.digits import Digits
    return Digits()


def test_preset_delays_the_holders_of_the_slow_class():
    cfg = _config("fedbuff", preset="intertwined-slow")
    setup = cfg["setup"]
    assert slow_classes(setup["trace"]) == [3]
    data = _digits().load(setup, 0)
    counts = class_counts(data)
    trace = make_trace(setup["trace"], setup["num_clients"], 0, counts)
    slow = trace.meta["slow_clients"]
    assert len(slow) == 4
    # the slow clients hold most of class 3, and wait far longer than the others
    assert counts[slow, 3].sum() > 0.5 * counts[:, 3].sum()
    fast = np.setdiff1d(np.arange(setup["num_clients"]), slow)
    assert trace.extra_delay[slow].min() >= 10 * trace.meta["round_seconds"] - 1e-9
    assert (trace.extra_delay[fast] == 0).all()
    sched = build_schedule(cfg, False, build_trace(cfg, data))
    assert len(sched) == 30


def test_paper_preset_lags_the_holders_bases_and_aggregates_every_method_by_one_rule():
    """``intertwined``: the same holders of class 3 report at the base trace's rate but train
    from a model 5–10 rounds old; fedbuff, dc-asgd and gi-switch share K, η_g and s(τ)."""
    cfg = _config("fedbuff")
    setup = cfg["setup"]
    data = _digits().load(setup, 0)
    trace = make_trace(setup["trace"], setup["num_clients"], 0, class_counts(data))
    slow = trace.meta["slow_clients"]
    assert slow == make_trace(_config("fedbuff", preset="intertwined-slow")["setup"]["trace"],
                              setup["num_clients"], 0, class_counts(data)).meta["slow_clients"]
    assert (trace.extra_delay == 0).all()
    assert ((trace.base_lag[slow] >= 5) & (trace.base_lag[slow] <= 10)).all()
    assert (np.delete(trace.base_lag, slow) == 0).all()
    rule = ("buffer_size", "server_lr", "server_momentum", "staleness")
    params = {m: _config(m)["method_params"] for m in ("fedbuff", "dc-asgd", "gi-switch")}
    assert len({tuple(p[k] for k in rule) for p in params.values()}) == 1
    assert params["fedbuff"]["staleness"] == "constant"
    assert params["dc-asgd"]["aggregation"] == params["gi-switch"]["aggregation"] == "fedbuff"


def test_slow_class_accuracy_is_the_mean_over_the_slow_classes():
    curve = pd.DataFrame({"accuracy": [0.5, 0.8], **{f"class_acc_{c}": [0.1 * c, 0.05 * c] for c in range(10)}})
    got = slow_class_accuracy(curve, slow_classes("intertwined:classes=3/7,slow=2"))
    assert got["slow_classes"] == "3/7"
    assert np.isclose(got["final_slow_class_accuracy"], (0.15 + 0.35) / 2)
    assert np.isclose(got["mean_slow_class_accuracy"], ((0.3 + 0.7) / 2 + (0.15 + 0.35) / 2) / 2)
    assert slow_class_accuracy(curve, slow_classes("fedrevive")) == {}


def test_run_summary_leaderboard_and_plot_show_slow_class_accuracy(tmp_path):
    digits = _digits()
    for method in ("fedbuff",):
        cfg = _config(method, total_arrivals="20")
        summary, _ = execute(cfg, digits, digits.load(cfg["setup"], 0), RunOptions(tmp_path / "results"))
        curve = pd.read_csv(tmp_path / "results" / "digits" / method / summary["run_id"] / "curve.csv")
        assert summary["final_slow_class_accuracy"] == curve["class_acc_3"].iloc[-1]
        stored = json.loads((tmp_path / "results" / "digits" / method / summary["run_id"] / "summary.json").read_text())
        assert stored["slow_classes"] == "3"
    board, written = build_report(tmp_path / "results", tmp_path / "report")
    cols = list(board.columns)
    assert cols.index("slow_class_acc") == cols.index("final_acc") + 1
    # one seed: its value and "n = 1", not a spread of zero
    assert board["slow_class_acc"].tolist() == [f"{summary['final_slow_class_accuracy']:.3f} (n = 1)"]
    assert (tmp_path / "report" / "digits-intertwined-slow-class-accuracy.png") in written
    assert (tmp_path / "report" / "digits-intertwined-slow-class-accuracy.png").stat().st_size > 1000
