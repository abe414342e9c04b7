"""The report's figures: every run shown to its end, seed bands, many methods as small
multiples, and the tuning sensitivity from a study's database."""
import json

import numpy as np
import pandas as pd
import pytest
from report_results import make_results, write_study, write_tuning

from asyncfl_bench.results import plots
from asyncfl_bench.results.report import build_report


def curves_of(ends: dict[str, list[float]]) -> pd.DataFrame:
    """Per method, one run per seed ending at the given virtual time, accuracy rising to 0.5 + end/100."""
    rows = []
    for method, seed_ends in ends.items():
        for seed, end in enumerate(seed_ends):
            t = np.linspace(0, end, 5)
            rows.append(pd.DataFrame({"method": method, "seed": seed, "time": t, "arrivals": np.arange(0, 50, 10),
                                      "accuracy": 0.1 + (0.4 + end / 100 - 0.1) * t / end}))
    return pd.concat(rows, ignore_index=True)


def test_seed_band_runs_to_the_longest_seed_holding_final_values():
    grid, mean, lo, hi, n = plots.seed_band(curves_of({"m": [10.0, 30.0]}), "time", "accuracy")
    assert n == 2 and grid[-1] == 30.0
    assert mean[-1] == pytest.approx((0.5 + 0.7) / 2)      # the mean of the seeds' final accuracies
    assert (lo[-1], hi[-1]) == pytest.approx((0.5, 0.7))


def _lines(ax) -> list[np.ndarray]:
    return [line.get_xdata() for line in ax.get_lines() if len(line.get_xdata()) == plots.GRID_POINTS]


def test_one_panel_shows_each_method_to_its_own_end():
    curves = curves_of({"fedbuff": [40.0], "fedavg-sync": [120.0]})
    fig = plots.curve_figure(curves, "time", "accuracy", "acc", "t", plots.method_colors(["fedbuff", "fedavg-sync"]))
    [ax] = fig.axes
    assert sorted(x[-1] for x in _lines(ax)) == [40.0, 120.0]          # the synchronous run is not cut at 40
    assert ax.get_xlim()[1] >= 120.0
    assert [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"] == [40.0]   # horizon


def test_many_methods_get_one_panel_each_best_first_the_rest_in_grey():
    names = [f"m{i}" for i in range(9)]
    curves = curves_of({m: [40.0 + 5 * i] for i, m in enumerate(names)})
    colors = plots.method_colors(names)
    fig = plots.curve_figure(curves, "time", "accuracy", "acc", "t", colors, small_multiples=True)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert len(panels) == 9
    assert [ax.get_title().split(" ")[0] for ax in panels] == names[::-1]   # highest final accuracy first
    first = panels[0]
    colored = [line for line in first.get_lines() if line.get_color() == colors["m8"]]
    grey = [line for line in first.get_lines() if line.get_color() == plots.MUTED]
    assert len(grey) == 8 and colored
    assert plots.MUTED not in colors.values() and len(set(colors.values())) == 9   # no method drawn in grey


def test_svg_names_no_outside_address_and_keeps_its_size():
    fig = plots.curve_figure(curves_of({"a": [10.0]}), "time", "accuracy", "acc", "t", {"a": "#1f77b4"},
                             figure_id="fig1", size=plots.PAGE_SIZE)
    svg = plots.svg_markup(fig, "fig1")
    assert svg.startswith("<svg") and "<metadata>" not in svg
    assert "http" not in svg.replace("http://www.w3.org", "")
    assert f"max-width:{round(plots.PAGE_SIZE[0] * 120)}px" in svg and 'id="fig1-m0-0"' in svg
    assert svg == plots.svg_markup(fig, "fig1")             # the same markup every time: a rebuilt page is equal


def test_staleness_and_server_cost_figures():
    colors = plots.method_colors(["a", "b"])
    fig = plots.staleness_figure({"a": np.arange(1000) % 4, "b": np.r_[np.zeros(999), 500]}, colors, "t",
                                 figure_id="f")
    [ax] = fig.axes
    assert ax.get_xlim()[1] < 10 and "max 500" in ax.get_xlabel()   # a heavy tail is named, not drawn
    assert ax.get_ylim()[0] == 0                                     # shares drawn from zero
    fig.canvas.draw()
    assert all(float(t).is_integer() for t in ax.get_xticks())      # whole versions only
    shares = {line.get_gid(): line.get_ydata() for line in ax.get_lines()}
    assert shares["f-m0-0"] == pytest.approx([0.25] * 4 + [0.0] * (len(shares["f-m0-0"]) - 4))
    fig = plots.server_cost_figure({"a": [1.0, 3.0], "b": [0.0, 0.0]}, colors, "t")
    [ax] = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "a"]   # cheapest first
    assert ax.get_xlim()[1] == pytest.approx(1.18 * 3.0)


def test_long_labels_wrap_after_commas_and_keep_every_character():
    label = "fedrevive[synth_every=1,class_proportions=histogram,distillation=True]"
    text = plots.wrapped(label, 30)
    assert text.replace("\n", "") == label
    assert text.splitlines() == ["fedrevive[synth_every=1,", "class_proportions=histogram,", "distillation=True]"]
    assert plots.wrapped("fedbuff", 30) == "fedbuff"


def test_every_column_of_small_multiples_keeps_its_time_labels():
    names = [f"m{i}" for i in range(7)]                    # 3 columns: the last row holds one panel
    fig = plots.curve_figure(curves_of({m: [40.0] for m in names}), "time", "accuracy", "acc", "t",
                             plots.method_colors(names), small_multiples=True)
    fig.canvas.draw()
    labelled = [ax for ax in fig.axes if ax.get_visible() and any(t.get_text() for t in ax.get_xticklabels())]
    assert len(labelled) == 3                              # the panel at the foot of each column


def test_tuning_trials_are_this_tunes_trials_scored_as_tune_scores_them(tmp_path):
    from asyncfl_bench.results.sensitivity import tuning_trials

    root = tmp_path / "r"
    write_tuning(root)                                              # no study database: the trial runs
    tuned = json.loads((root / "tuned" / "digits-ci.json").read_text())
    [(method, frame)] = tuning_trials(root, tuned).items()
    assert method == "fedbuff" and list(frame.columns) == ["server_lr", "value"]
    got = dict(zip(frame["server_lr"], frame["value"]))
    assert got == pytest.approx({0.1: 0.4, 0.5: 0.8, 1.0: 0.3})     # final validation accuracy per trial
    tuned["tuning_seeds"] = [1000, 1001]                            # a seed's run missing: no finished trial
    assert tuning_trials(root, tuned) == {}


def test_sensitivity_comes_from_the_studies_read_only(tmp_path):
    from asyncfl_bench.results.sensitivity import sensitivity, tuning_trials

    results = make_results(tmp_path / "r", tuning=True)   # trial runs under tuned/trials/ say 0.4, 0.8, 0.3
    storage = results / "tuned" / "digits-ci.db"
    write_study(storage)
    before = storage.read_bytes()
    tuned = json.loads((results / "tuned" / "digits-ci.json").read_text())
    [(method, frame)] = tuning_trials(results, tuned).items()
    assert method == "fedbuff"
    # the study's values, its first three finished trials (the budget), the failed one left out
    assert dict(zip(frame["server_lr"], frame["value"])) == pytest.approx({0.2: 0.6, 0.5: 0.9, 3.0: 0.1})
    fig, problem = sensitivity(results, tuned, {"fedbuff[tuned]": "#ff7f0e"})
    [ax] = [ax for ax in fig.axes if ax.get_visible()]              # one method, one tuned value: one panel
    dots, ring = ax.get_lines()
    assert problem is None and ax.get_xscale() == "log"             # sampled on a log scale, drawn on one
    assert sorted(dots.get_xdata()) == [0.2, 0.5, 3.0] and dots.get_color() == "#ff7f0e"   # the tuned runs' colour
    assert list(ring.get_xdata()) == [0.5]                          # the tuned value ringed
    _, written = build_report(results, results / "report")
    assert storage.read_bytes() == before                                       # the report changed nothing
    png = results / "report" / "digits-ci-tuning-sensitivity.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    storage.write_bytes(b"not a database" * 100)                                # damaged: say so, report the rest
    assert sensitivity(results, tuned, {})[1].startswith("the study database tuned/digits-ci.db is unreadable")
    _, written = build_report(results, results / "report2")
    assert not (results / "report2" / "digits-ci-tuning-sensitivity.png").exists()
    assert (results / "report2" / "digits-ci-accuracy.png") in written


def test_no_sensitivity_plot_without_a_readable_tune(tmp_path):
    results = make_results(tmp_path / "r")
    _, written = build_report(results, results / "report")
    assert [p.name for p in written if p.suffix == ".png"] == ["digits-ci-accuracy.png"]
    (results / "tuned").mkdir()
    (results / "tuned" / "digits-ci.json").write_text("{not json")            # unreadable: no plot, no error
    _, written = build_report(results, results / "report")
    assert [p.name for p in written if p.suffix == ".png"] == ["digits-ci-accuracy.png"]
