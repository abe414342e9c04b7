"""Report statistics on constructed results where the answers are known by hand."""
import numpy as np
import pandas as pd
import pytest

from asyncfl_bench.results.metrics import mean_accuracy_over_time, mean_ci
from asyncfl_bench.results.report import leaderboard


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


def test_one_seed_shows_n_1_not_a_zero_spread():
    runs, curves = _frames()
    one = runs["seed"] == 0
    board = leaderboard(runs[one], curves[curves["seed"] == 0]).set_index("method")
    assert board.loc["better", "final_acc"] == "0.800 (n = 1)"
    assert not board["final_acc"].str.contains("±").any()


def test_tuned_runs_are_labelled_and_never_ranked_with_default_ones_silently():
    from asyncfl_bench.results.report import variant_labels

    tuning = {"objective": "mean_accuracy", "trials": 20, "runs_per_trial": 1}

    def cfg(seed, lr, tuned):
        return {"task": "t", "preset": "ci", "method": "fedbuff", "seed": seed, "method_params": {"server_lr": lr},
                "setup": {"validation_fraction": 0.1 if tuned else 0.0}, **({"tuning": tuning} if tuned else {})}

    # tuning changed the value and the hold-out: "tuned" says it, rather than every changed key
    assert variant_labels([cfg(0, 1.0, False), cfg(1, 1.0, False), cfg(0, 0.4, True), cfg(1, 0.4, True)]) == \
        ["fedbuff", "fedbuff", "fedbuff[tuned]", "fedbuff[tuned]"]
    # all tuned: still tagged, so a tuned row never reads as a default one
    assert variant_labels([cfg(0, 0.4, True), cfg(1, 0.4, True)]) == ["fedbuff[tuned]", "fedbuff[tuned]"]
    assert variant_labels([cfg(0, 1.0, False), cfg(0, 0.4, True), cfg(0, 0.5, True)]) == \
        ["fedbuff", "fedbuff[tuned,server_lr=0.4]", "fedbuff[tuned,server_lr=0.5]"]

    # default and tuned runs of every method: the tuned ones rank among themselves, against tuned FedBuff
    runs, curves = _frames()
    tuned_runs = runs.assign(method=runs["method"] + "[tuned]", tuned=True,
                             tuning_budget="20 trials × 1 run(s), mean_accuracy on validation",
                             final_accuracy=runs["final_accuracy"][::-1].to_numpy())
    tuned_curves = curves.assign(method=curves["method"] + "[tuned]")
    board = leaderboard(pd.concat([runs.assign(tuned=False, tuning_budget=""), tuned_runs], ignore_index=True),
                        pd.concat([curves, tuned_curves], ignore_index=True))
    marks = board.set_index("method")["hyperparameters"]
    assert marks["better[tuned]"] == "tuned (20 trials × 1 run(s), mean_accuracy on validation)"
    assert marks["fedbuff"] == "default"
    assert list(board["method"]) == ["better", "fedbuff", "broken",                    # default, best first
                                     "better[tuned]", "broken[tuned]", "fedbuff[tuned]"]   # then tuned, best first
    wins = board.set_index("method")["wins_vs_fedbuff"]
    # tuned "broken" finals (reversed column): 0.74, 0.72, 0.70 against tuned fedbuff's 0.76, 0.75, 0.1
    assert wins["broken[tuned]"] == "1W/2L" and wins["fedbuff[tuned]"] == "—"
    assert board.attrs["warnings"] == []


def test_leaderboard_shows_effective_step_and_diagnostics():
    runs, curves = _frames()
    runs["effective_server_step"] = np.where(runs["method"] == "fedbuff", [0.1, 0.2, 0.3] * 3, 0.05)
    runs["diagnostics.mean_beta"] = np.where(runs["method"] == "better", 0.25, np.nan)   # only one method has it
    board = leaderboard(runs, curves).set_index("method")
    assert board.loc["fedbuff", "effective_step"] == "0.2" and board.loc["better", "effective_step"] == "0.05"
    assert board.loc["better", "diagnostics.mean_beta"] == "0.25"
    assert board.loc["fedbuff", "diagnostics.mean_beta"] == "—"
    assert leaderboard(runs.drop(columns="effective_server_step"), curves)["effective_step"].eq("—").all()


def test_markdown_has_one_table_per_ranking(tmp_path):
    from report_results import make_results

    from asyncfl_bench.results.report import build_report

    results = make_results(tmp_path / "r")   # fedbuff tuned, the others default
    build_report(results, results / "report")
    md = (results / "report" / "leaderboard.md").read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["## digits · preset ci · default hyperparameters",
                        ("## digits · preset ci · tuned (3 trials × 1 run(s), final_accuracy on validation) "
                         "hyperparameters")]
    default, tuned = md.split("## ")[1:]
    assert "| fedasync |" in default and "| fedavg-sync |" in default and "| fedbuff |" not in default
    assert "| fedbuff[tuned] |" in tuned and "| fedasync |" not in tuned


def test_long_variant_labels_are_cut_but_stay_distinct():
    from asyncfl_bench.results.report import variant_labels

    spec = "fedrevive:freeze_versions=20,warmup_versions=40,synth_batch=32"
    new = {"task": "t", "preset": "ci", "method": "fedecho", "seed": 0, "setup": {},
           "method_params": {"synthesiser": spec, "a": 1, "b": 2, "c": 3, "d": 4}}
    old = {**new, "method_params": {"synthesiser": spec + ",synth_every=2"}}   # an older version: keys a-d absent
    labels = variant_labels([new, old])
    # synthesiser is set in both runs, so it is named first; a-d are absent from the older run
    assert labels == ["fedecho[synthesiser=fedrevive:freeze_ve…,a=1,b=2,+2 more]",
                      "fedecho[synthesiser=fedrevive:freeze_ve…,a=None,b=None,+2 more]"]
    # two settings that differ only past the cut: a digest of the settings tells them apart
    tail = {**new, "method_params": {**new["method_params"], "synthesiser": spec + ",synth_every=2"}}
    cut = variant_labels([new, tail])
    assert cut[0] != cut[1] and all(label.startswith("fedecho[synthesiser=fedrevive:freeze_ve…,#") for label in cut)
    assert variant_labels([tail, new]) == cut[::-1]                 # the digest names the settings, not the order
