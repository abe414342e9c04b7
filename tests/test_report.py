"""Report statistics on constructed results where the answers are known by hand."""
import numpy as np
import pandas as pd
import pytest

from asyncfl_bench.results.report import leaderboard
from asyncfl_bench.results.metrics import mean_accuracy_over_time, mean_ci


def test_mean_ci_uses_student_t():
    mean, half = mean_ci([0.8, 0.9, 1.0])
    # t_{0.975, 2} = 4.302653; s = 0.1; half = t·s/sqrt(3)
    assert mean == pytest.approx(0.9) and half == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert mean_ci([0.7]) == (0.7, 0.0)


def test_mean_accuracy_over_time_is_the_step_area():
    curve = pd.DataFrame({"time": [0.0, 2.0, 6.0], "accuracy": [0.1, 0.5, 0.9]})
    # 0.1 on [0,2), 0.5 on [2,6), 0.9 on [6,10] → (0.2 + 2.0 + 3.6)/10
    assert mean_accuracy_over_time(curve, 10.0) == pytest.approx(0.58)
    assert mean_accuracy_over_time(curve, 4.0) == pytest.approx((0.2 + 1.0) / 4)


def _frames():
    runs, curves = [], []
    finals = {"fedbuff": [0.70, 0.72, 0.74], "better": [0.80, 0.71, 0.90], "broken": [0.1, 0.75, 0.76]}
    for method, accs in finals.items():
        for seed, acc in enumerate(accs):
            diverged = method == "broken" and seed == 0
            runs.append({"task": "t", "preset": "ci", "method": method, "seed": seed, "final_accuracy": acc,
                         "best_accuracy": acc, "target_accuracy": 0.7, "diverged": diverged,
                         "diverged_at": 3.0 if diverged else None})
            reach = {"fedbuff": 8.0, "better": 4.0, "broken": 6.0}[method]
            curves.append(pd.DataFrame({"task": "t", "preset": "ci", "method": method, "seed": seed,
                                        "time": [0.0, reach, 10.0], "accuracy": [0.1, max(acc, 0.7) if acc >= 0.7 else acc, acc]}))
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def test_leaderboard_statistics():
    runs, curves = _frames()
    board = leaderboard(runs, curves).set_index("method")
    assert list(board.index) == ["better", "fedbuff", "broken"]      # sorted by mean final accuracy
    assert board.loc["better", "wins_vs_fedbuff"] == "2W/1L"          # 0.80>0.70, 0.71<0.72, 0.90>0.74
    assert board.loc["fedbuff", "wins_vs_fedbuff"] == "—"
    assert board.loc["fedbuff", "ttt"] == "8.0" and board.loc["better", "ttt"] == "4.0"
    assert board.loc["better", "speedup_vs_fedbuff"] == "2.00×"
    assert board.loc["broken", "ttt"] == "— (2/3)"                    # a seed never reached 0.7
    assert board.loc["broken", "diverged"].startswith("1 (at t=3.0")  # shown, never dropped
    assert board.loc["broken", "seeds"] == 3
    mean, half = mean_ci([0.80, 0.71, 0.90])
    assert board.loc["better", "final_acc"] == f"{mean:.3f} ± {half:.3f}"


def test_runs_with_different_settings_are_separate_rows():
    from asyncfl_bench.results.report import variant_labels

    def cfg(method, seed, beta="cosine", lr=0.1):
        return {"task": "t", "preset": "ci", "method": method, "seed": seed,
                "method_params": {"beta": beta, "k": 1}, "setup": {"local": {"lr": lr}}}

    configs = [cfg("fedrevive", 0), cfg("fedrevive", 1), cfg("fedrevive", 0, beta="fixed:0.5"),
               cfg("fedbuff", 0), cfg("fedbuff", 1)]
    labels = variant_labels(configs)
    assert labels == ["fedrevive[beta=cosine]", "fedrevive[beta=cosine]", "fedrevive[beta=fixed:0.5]",
                      "fedbuff", "fedbuff"]
    assert variant_labels([cfg("fedbuff", 0), cfg("fedbuff", 1, lr=0.2)]) == \
        ["fedbuff[setup.local.lr=0.1]", "fedbuff[setup.local.lr=0.2]"]
