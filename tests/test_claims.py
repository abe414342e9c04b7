"""Claims: the catalog resolves, the verdict comes from the runs (a fabricated results
folder with a known outcome gives that verdict, the opposite outcome the opposite one),
and a claim runs end to end at ci scale."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from asyncfl_bench.claims import plan as planning
from asyncfl_bench.claims import verdict
from asyncfl_bench.claims.spec import SCALES, catalog, parse, select
from asyncfl_bench.cli import app
from asyncfl_bench.config.identity import run_id
from asyncfl_bench.errors import UserError
from asyncfl_bench.results.store import run_dir

runner = CliRunner()

MINIMAL = """
paper = "P"
where = "Table 1"
statement = "A beats B."
paper_figure = "+1 %"
metric = "final_accuracy"
arm = "a"
against = ["b"]
[arms.a]
method = "fedbuff"
[arms.b]
method = "fedasync"
[scales.ci]
task = "digits"
preset = "ci"
seeds = "0-2"
[scales.small]
task = "digits"
preset = "small"
seeds = "0-4"
"""


def test_every_claim_resolves_at_every_scale(tmp_path):
    """Each shipped claim names registered methods, tasks and presets, and its overrides are
    real settings: every run of every scale resolves (nothing is loaded or trained)."""
    claims = catalog()
    assert {"fedrevive-final-vs-fedbuff", "fedbuff-vs-fedasync", "gi-switch-affected-class",
            "fedgen-vs-fedavg", "fedecho-vs-fedbuff", "fedrevive-adaptive-beta"} <= set(claims)
    for claim in claims.values():
        for scale in claim.scales:
            if claim.scales[scale].tuned:   # needs `tune` first, and says so
                with pytest.raises(UserError, match=f"fix: asyncfl-bench tune --task digits --preset {scale} "
                                                    f"--method fedbuff,fedrevive --results"):
                    planning.make_plan(claim, scale, [0, 1], "cpu", tmp_path)
                continue
            p = planning.make_plan(claim, scale, [0, 1], "cpu", tmp_path)
            assert set(p.configs) == set(claim.arms)
            for arm, cfgs in p.configs.items():
                assert [c["method"] for c in cfgs] == [claim.arms[arm].method] * 2
    beta = planning.make_plan(claims["fedrevive-adaptive-beta"], "ci", [0], "cpu", tmp_path).configs
    assert beta["fixed-0.75"][0]["method_params"]["beta"] == "fixed:value=0.75"
    assert beta["adaptive"][0]["method_params"]["beta"] == "cosine:s_max=auto"
    shifted = planning.make_plan(claims["fedrevive-shifted"], "small", [0], "cpu", tmp_path).configs
    assert {c[0]["setup"]["trace"] for c in shifted.values()} == {"fedrevive-shifted"}


def test_bad_claim_files_name_the_problem():
    parse("ok", MINIMAL)
    for broken, words in [(MINIMAL.replace('"final_accuracy"', '"speed"'), "metric 'speed' unknown"),
                          (MINIMAL.replace('against = ["b"]', 'against = ["c"]'), "arm 'c' is compared"),
                          (MINIMAL.replace('paper = "P"\n', ""), "missing field 'paper'"),
                          (MINIMAL.replace("[scales.small]", "[scales.huge]"), "scale 'huge' unknown")]:
        with pytest.raises(UserError, match=words):
            parse("broken", broken)
    with pytest.raises(UserError, match="unknown claim 'nope'"):
        select("nope")


def test_verdict_rule():
    holds = verdict.decide("final_accuracy", [0.9, 0.85, 0.88], [0.8, 0.77, 0.79])
    assert holds.verdict == verdict.HOLDS and holds.wins == 3 and holds.low > 0
    assert math.isclose(holds.effect, (0.1 + 0.08 + 0.09) / 3)
    fails = verdict.decide("final_accuracy", [0.8, 0.77, 0.79], [0.9, 0.85, 0.88])
    assert fails.verdict == verdict.FAILS and fails.losses == 3
    mixed = verdict.decide("final_accuracy", [0.9, 0.7, 0.85], [0.8, 0.8, 0.8])
    assert mixed.verdict == verdict.INCONCLUSIVE and mixed.low < 0 < mixed.high
    # one seed: no interval, so no verdict either way however large the gap
    assert verdict.decide("final_accuracy", [0.99], [0.1]).verdict == verdict.INCONCLUSIVE
    # times compare by ratio: A at half of B's time is a speed-up of 2 on every seed
    fast = verdict.decide("time_to_target", [10.0, 20.0, 30.0], [20.0, 40.0, 60.0])
    assert math.isclose(math.exp(fast.effect), 2.0) and fast.low == fast.high
    assert verdict.measured_text("time_to_target", fast).startswith("2.00× faster")
    assert verdict.overall([verdict.HOLDS, verdict.HOLDS]) == verdict.HOLDS
    assert verdict.overall([verdict.HOLDS, verdict.INCONCLUSIVE]) == verdict.INCONCLUSIVE
    assert verdict.overall([verdict.HOLDS, verdict.FAILS]) == verdict.FAILS


def _fabricate(results, p: planning.Plan, outcome: dict) -> None:
    """A finished run folder for every config of the plan, with accuracy ``outcome[method]``
    (a list per seed) reached at arrival ``10 * round(100 * (1 - acc))`` when ≥ target."""
    for cfgs in p.configs.values():
        for cfg in cfgs:
            folder = run_dir(results, cfg["task"], cfg["method"], run_id(cfg))
            folder.mkdir(parents=True)
            acc = outcome[cfg["method"]][cfg["seed"]]
            hit = 10 * round(100 * (1 - acc))        # higher accuracy: reached sooner
            arrivals = list(range(0, 301, 10))
            curve = pd.DataFrame({"arrivals": arrivals, "version": arrivals, "time": [a / 6 for a in arrivals],
                                  "accuracy": [acc if a >= hit else 0.1 for a in arrivals]})
            curve.to_csv(folder / "curve.csv", index=False)
            reached = curve.loc[curve["accuracy"] >= 0.8, "time"]
            summary = {"arrivals": 300, "final_time": 50.0, "final_accuracy": acc, "best_accuracy": acc,
                       "time_to_target": float(reached.iloc[0]) if len(reached) else None,
                       "target_accuracy": 0.8, "diverged": False, "method": cfg["method"], "seed": cfg["seed"],
                       "run_id": run_id(cfg), "seconds": {"total": 1.0}}
            (folder / "config.json").write_text(json.dumps(cfg))
            (folder / "summary.json").write_text(json.dumps(summary))


@pytest.mark.parametrize("claim_id", ["fedecho-vs-fedbuff", "fedbuff-vs-fedasync"])
def test_verdict_is_computed_from_the_runs(tmp_path, claim_id):
    """The command reuses the fabricated runs (nothing trains) and decides from them: the
    claimed arm better on every seed → holds; the same numbers swapped → does not hold."""
    claim = select(claim_id)[0]
    mine, other = claim.arms[claim.arm].method, claim.arms[claim.against[0]].method
    good, bad = [0.92, 0.9, 0.94], [0.82, 0.83, 0.81]
    for name, outcome, expected in [("known", {mine: good, other: bad}, "holds"),
                                    ("opposite", {mine: bad, other: good}, "does not hold")]:
        results = tmp_path / name
        _fabricate(results, planning.make_plan(claim, "ci", [0, 1, 2], "cpu", results), outcome)
        r = runner.invoke(app, ["claims", "run", claim_id, "--scale", "ci", "--results", str(results)])
        assert r.exit_code == 0, r.output
        assert "ran" not in r.output.replace("runs", "")       # every run was reused, none trained
        table = pd.read_csv(results / "claims" / "ci.csv")
        row = table.set_index("claim").loc[claim_id]
        assert row["verdict"] == expected and row["claim_verdict"] == expected
        assert row["seeds"] == 3 and row["wins"] == (3 if expected == "holds" else 0)


def test_a_claim_runs_at_ci_scale(tmp_path):
    """`claims run ID --scale ci` trains its runs, prints the table and keeps the row; a
    second claim's rows join the same table without removing the first's."""
    r = runner.invoke(app, ["claims", "run", "fedbuff-vs-fedasync", "--scale", "ci", "--seeds", "0-1",
                            "--results", str(tmp_path), "--threads", "1"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(tmp_path / "claims" / "ci.csv")
    assert list(table["claim"]) == ["fedbuff-vs-fedasync"]
    row = table.iloc[0]
    assert row["seeds"] == 2 and row["verdict"] in ("holds", "does not hold", "inconclusive")
    assert len(row["runs"].split()) == 4 and "× faster" in row["measured"]
    bad = runner.invoke(app, ["claims", "run", "fedbuff-vs-fedasync", "--scale", "huge"])
    assert bad.exit_code == 2 and "--scale 'huge' unknown" in bad.output
    assert set(SCALES) == {"ci", "small", "paper"}


def test_measurement_claim_verdict_comes_from_its_tables(tmp_path):
    """A measurement claim pairs probes (seed, client, T, τ): fabricated per-seed tables with
    the GI estimate closer than the stale one give holds, the errors swapped does not hold."""
    claim = select("gi-estimate-error")[0]
    for name, gi, stale, expected in [("known", 0.5, 1.0, "holds"), ("opposite", 1.0, 0.5, "does not hold")]:
        results = tmp_path / name
        p = planning.make_plan(claim, "ci", [0, 1], "cpu", results)
        folder = p.measurement_folder(results)
        folder.mkdir(parents=True)
        for seed in (0, 1):
            rows = [{"seed": seed, "client": c, "T": 24, "tau": 16, "estimator": est,
                     "relative_l1": err + 0.01 * c + 0.001 * seed, "cosine_distance": 0.5, "seconds": 0.0}
                    for c in (3, 7) for est, err in (("gi-free", gi), ("stale", stale), ("dc-asgd-a", stale))]
            pd.DataFrame(rows).to_csv(folder / f"seed-{seed}.csv", index=False)
        r = runner.invoke(app, ["claims", "run", "gi-estimate-error", "--scale", "ci", "--results", str(results)])
        assert r.exit_code == 0, r.output
        assert r.output.count(": done (") == 2                    # both parts reused, nothing measured
        table = pd.read_csv(results / "claims" / "ci.csv").set_index("against")
        assert set(table.index) == {"stale", "dc-asgd-a"}
        assert (table["verdict"] == expected).all() and (table["pairs"] == 4).all() and (table["seeds"] == 2).all()
        assert math.isclose(table.loc["stale", "effect"], stale - gi)
        assert table.loc["stale", "runs"] == p.measurement_path().as_posix()   # relative: no machine path


def test_measurement_claims_are_checked():
    text = MINIMAL.replace('metric = "final_accuracy"', 'metric = "relative_l1"')
    with pytest.raises(UserError, match="metric relative_l1 is for measurements"):
        parse("x", text)
    measured = (text.replace("[arms.a]\nmethod = \"fedbuff\"\n[arms.b]\nmethod = \"fedasync\"\n", "")
                .replace('paper = "P"', 'paper = "P"\nkind = "measurement"\nmeasurement = "gi-estimate-error"'))
    claim = parse("x", measured)
    with pytest.raises(UserError, match="gi-estimate-error has no estimator 'a'"):
        planning.make_plan(claim, "ci", [0], "cpu", "unused")
    with pytest.raises(UserError, match="no \\[arms\\] tables"):
        parse("x", measured + '[arms.a]\nmethod = "fedbuff"\n')


def test_a_tuned_claim_reads_the_tuned_values_file(tmp_path):
    """A tuned scale applies RESULTS/tuned/<task>-<preset>.json like `run --tuned auto`: a file
    without one of the claim's methods is refused, naming it."""
    from report_results import write_tuning

    write_tuning(tmp_path)
    claim = select("fedrevive-final-vs-fedbuff-tuned")[0]
    with pytest.raises(UserError, match="has no tuned values for 'fedrevive'"):
        planning.make_plan(claim, "ci", [0], "cpu", tmp_path)
