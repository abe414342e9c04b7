"""The CI regression gate: passes on its own results, fails (exit 1) on a worsened one."""
import json
from pathlib import Path

from typer.testing import CliRunner

from asyncfl_bench.results import gate
from asyncfl_bench.cli import app
from asyncfl_bench.config.registry import methods

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _make_baseline(tmp_path):
    base, results = tmp_path / "ci.json", tmp_path / "r"
    res = runner.invoke(app, ["check", "--baseline", str(base), "--results", str(results), "--update",
                              "--method", "fedbuff,fedasync"])
    assert res.exit_code == 0, res.output
    # shrink the runs so the test is quick: the overrides travel with each baseline entry
    blob = json.loads(base.read_text())
    for run in blob["runs"]:
        run["set"] = {"total_arrivals": "30", "num_clients": "8", "concurrency": "3", "eval_every": "10",
                      "target_accuracy": "0.3"}
    base.write_text(json.dumps(blob))
    results2 = tmp_path / "r2"
    res = runner.invoke(app, ["check", "--baseline", str(base), "--results", str(results2), "--update"])
    assert res.exit_code == 0, res.output
    return base, results2


def test_check_passes_then_fails_on_a_worsened_result(tmp_path):
    base, results = _make_baseline(tmp_path)
    runs = gate.read(base)["runs"]
    assert {r["method"] for r in runs} == {"fedbuff", "fedasync"} and all(r["set"] for r in runs)
    ok = runner.invoke(app, ["check", "--baseline", str(base), "--results", str(results)])
    assert ok.exit_code == 0, ok.output
    assert "within tolerance" in ok.output

    summary_path = next(results.glob("digits/fedbuff/*/summary.json"))
    summary = json.loads(summary_path.read_text())
    summary["final_accuracy"] -= 0.05          # a deliberate regression beyond the 0.02 tolerance
    summary_path.write_text(json.dumps(summary))
    bad = runner.invoke(app, ["check", "--baseline", str(base), "--results", str(results)])
    assert bad.exit_code == 1, bad.output
    assert "WORSE" in bad.output and "final_accuracy" in bad.output and "-0.05" in bad.output
    # a looser tolerance accepts it
    assert runner.invoke(app, ["check", "--baseline", str(base), "--results", str(results),
                               "--tolerance", "0.06"]).exit_code == 0


def test_compare_time_to_target_rules():
    b = {"task": "t", "method": "m", "seed": 0, "final_accuracy": 0.9, "best_accuracy": 0.9, "time_to_target": 10.0}
    worse = {r["metric"]: r["worse"] for r in gate.compare(b, {**b, "time_to_target": 10.3}, 0.02)}
    assert worse["time_to_target"] and not worse["final_accuracy"]
    assert not any(r["worse"] for r in gate.compare(b, {**b, "time_to_target": 10.1}, 0.02))
    assert any(r["worse"] for r in gate.compare(b, {**b, "time_to_target": None}, 0.02))


def test_committed_baseline_covers_every_registered_method():
    runs = gate.read(REPO / "results" / "baselines" / "ci.json")["runs"]
    assert {r["method"] for r in runs} == set(methods())
    assert {(r["task"], r["preset"]) for r in runs} == {("digits", "ci")}


def test_a_tuned_baseline_reruns_with_its_tuned_file(tmp_path):
    """A baseline entry with ``tuned`` reruns as `run --tuned` would: the tuned values,
    the validation hold-out, the budget record; the file is found relative to the baseline."""
    from conftest import tiny_config
    from asyncfl_bench.tuning import tuned as tuned_file

    small = {"total_arrivals": "30", "num_clients": "8", "concurrency": "3", "eval_every": "10"}
    setup = tiny_config("fedbuff", **small)["setup"]
    (tmp_path / "b").mkdir()
    tuned_path = tmp_path / "b" / "tuned-digits-ci.json"
    tuned_file.write(tuned_path, {
        "format": tuned_file.FORMAT, "schema": tuned_file.SCHEMA, "task": "digits", "preset": "ci",
        "objective": "mean_accuracy", "direction": "maximize",
        "budget": {"trials": 3, "runs_per_trial": 1}, "tuning_seeds": [1000], "validation_fraction": 0.1,
        "setup": {**setup, "validation_fraction": 0.1, "evaluate_on": "test"}, "storage": "digits-ci.db",
        "methods": {"fedbuff": {"params": {"server_lr": 0.31}, "value": 0.5, "best_trial": 1}}})
    base = tmp_path / "b" / "ci-tuned.json"
    assert gate.relative_to_baseline(tuned_path, base) == "tuned-digits-ci.json"
    from conftest import TINY
    gate.write(base, [{"task": "digits", "preset": "ci", "method": "fedbuff", "seed": 0, "set": {**TINY, **small},
                       "tuned": "tuned-digits-ci.json", "final_accuracy": 0.0, "best_accuracy": 0.0,
                       "time_to_target": None}])
    args = ["check", "--baseline", str(base), "--results", str(tmp_path / "r")]
    res = runner.invoke(app, args + ["--update"])
    assert res.exit_code == 0, res.output
    [entry] = gate.read(base)["runs"]
    [folder] = (tmp_path / "r").glob("digits/fedbuff/*")
    summary = json.loads((folder / "summary.json").read_text())
    assert entry["tuned"] == "tuned-digits-ci.json" and entry["final_accuracy"] == summary["final_accuracy"]
    [config] = [json.loads(p.read_text()) for p in (tmp_path / "r").glob("digits/fedbuff/*/config.json")]
    assert config["method_params"]["server_lr"] == 0.31 and config["tuning"]["trials"] == 3
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert gate.compare(entry, summary, 0.02)[0]["run"] == "digits/fedbuff[tuned]/seed 0"
