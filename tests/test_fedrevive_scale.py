"""FedRevive relative to the run (slice 2): gates as shares of the run's versions, s_max
from the schedule's staleness, the authors' absolute values at paper scale, a revival on
a bring-your-own ci run, and the warning of a run that never distilled."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from asyncfl_bench.cli import app
from asyncfl_bench.config.registry import get_method, get_task, methods
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.contract.method import RunPlan, never_engaged
from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.fedrevive import FedRevive
from asyncfl_bench.methods.fedrevive.afl_dw import AFLDW
from asyncfl_bench.methods.fedrevive.scale import PAPER_VERSIONS, auto_s_max, resolve_gate
from asyncfl_bench.results.report import build_report
from asyncfl_bench.simulation.run import RunOptions, execute, run_plan
from asyncfl_bench.tasks.byo import BringYourOwn
from asyncfl_bench.traces.generators import make_trace
from asyncfl_bench.traces.schedule import make_schedule

from fedrevive_setup import SMALL, arrive, make

runner = CliRunner()


def plan_of(staleness, arrivals=None) -> RunPlan:
    """A plan whose arrival i was dispatched ``staleness[i]`` arrivals before it."""
    tau = np.asarray(staleness)
    n = len(tau) if arrivals is None else arrivals
    return RunPlan(n, np.arange(n) - np.resize(tau, n))


def with_plan(cls=FedRevive, plan=None, **hp):
    """``make``'s method, built again with the run's plan in its context (a run builds the
    schedule before the method)."""
    m = make(cls, **hp)
    m.ctx.plan = plan
    return cls(m.ctx, m.params, **({**SMALL, **hp} if cls is FedRevive else hp))


def paper_plan(task: str = "cifar10", seed: int = 0) -> RunPlan:
    cfg = resolve(get_task(task), "paper", get_method("fedrevive"), seed, "cpu", {}, list(methods()))
    s = cfg["setup"]
    return run_plan(make_schedule(make_trace(s["trace"], s["num_clients"], seed, None), s["concurrency"],
                                  s["total_arrivals"], seed, False))


# -- cadence and L_adv ------------------------------------------------------------------------
def test_synthesis_on_every_revived_arrival_by_default_and_adversarial_from_the_warmup_th():
    assert FedRevive.defaults["synth_every"] == 1 and FedRevive.defaults["adv_start"] == "warmup"
    m = make(freeze_versions=0, warmup_versions=3, beta="fixed:0.5", buffer_size=2, server_lr=1.0)
    flags = []
    real = m.synthesize
    m.synthesize = lambda params, adversarial: flags.append(adversarial) or real(params, adversarial)
    for i in range(6):
        arrive(m, i % 4, torch.zeros_like(m.params), 1)
    assert m.version == 3 and m.synth.count == 6               # two arrivals per version, both synthesise
    assert flags == [False, False, True, True, True, True]     # ep >= ep_start, ep counting this synthesis
    assert m.metrics()["resolved"]["adv_start_synthesis"] == 3


def test_adversarial_loss_starts_after_the_configured_number_of_syntheses():
    m = make(freeze_versions=0, warmup_versions=1, adv_start=5, beta="fixed:0.5", server_lr=1.0)
    flags = []
    real = m.synthesize
    m.synthesize = lambda params, adversarial: flags.append(adversarial) or real(params, adversarial)
    for i in range(7):
        arrive(m, i % 4, torch.zeros_like(m.params), 1)
    assert flags == [False] * 4 + [True] * 3                   # the 5th synthesis is the first with L_adv
    with pytest.raises(UserError, match="adv_start"):
        make(adv_start="soon")


# -- gates ------------------------------------------------------------------------------------
def test_gates_resolve_as_shares_of_the_runs_versions_or_as_versions():
    assert [resolve_gate(g, 300, "g") for g in ("0.25%", "0.5%", "2%", "2.5%", 40, "40", "0%")] == \
        [1, 2, 6, 8, 40, 40, 0]
    # the defaults are the authors' 50 / 100 (CIFAR-10) and 400 / 500 (FEMNIST) at paper scale
    assert [resolve_gate(g, PAPER_VERSIONS, "g") for g in ("0.25%", "0.5%", "2%", "2.5%")] == [50, 100, 400, 500]
    for bad in ("soon", "120%", "-1", -3, True):
        with pytest.raises(UserError):
            resolve_gate(bad, 300, "freeze_versions")
    # a run's versions are its arrivals ÷ B: 300 arrivals at B = 2 are 150 versions
    m = with_plan(plan=plan_of([3], 300), freeze_versions="2%", warmup_versions="10%", buffer_size=2)
    assert (m.freeze, m.warmup, m.run_versions, m.last_version) == (3, 15, 150, 149)
    # outside a run (no plan): paper scale, the authors' absolute values
    m = make()
    assert (m.freeze, m.warmup, m.adv_start) == (50, 100, 100)


@pytest.mark.parametrize("task, gates", [("cifar10", (50, 100)), ("cifar100", (50, 100)),
                                          ("20newsgroups", (50, 100)), ("femnist", (400, 500))])
def test_paper_presets_resolve_to_the_authors_absolute_values(task, gates):
    cfg = resolve(get_task(task), "paper", get_method("fedrevive"), 0, "cpu", {}, list(methods()))
    p = cfg["method_params"]
    versions = RunPlan(cfg["setup"]["total_arrivals"], np.zeros(1)).versions(p["buffer_size"])
    assert versions == PAPER_VERSIONS
    assert (resolve_gate(p["freeze_versions"], versions, "f"), resolve_gate(p["warmup_versions"], versions, "w")) \
        == gates
    assert p["beta"] == "cosine:s_max=75" and p["synth_every"] == 1
    dw = resolve(get_task(task), "paper", get_method("afl-dw"), 0, "cpu", {}, list(methods()))["method_params"]
    assert dw == {k: p[k] for k in ("buffer_size", "server_lr", "beta")}


@pytest.mark.parametrize("task, values", [
    ("cifar10", {"kd_lr": 1e-4, "w_bn": 3e-3, "lr_g": 3e-3, "lr_z": 1e-3}),
    ("cifar100", {"kd_lr": 3e-5, "w_bn": 3e-4}),
    ("20newsgroups", {"kd_lr": 3e-4, "lr_g": 1e-2, "lr_z": 0.1, "w_bn": 1e-4}),
    ("femnist", {"lr_g": 1e-2, "lr_z": 3e-3, "w_bn": 0.3, "server_lr": 0.05})])
def test_paper_presets_take_the_authors_per_dataset_settings(task, values):
    cfg = resolve(get_task(task), "paper", get_method("fedrevive"), 0, "cpu", {}, list(methods()))
    assert {k: cfg["method_params"][k] for k in values} == values
    assert cfg["setup"]["local"]["lr"] == (3e-4 if task == "cifar10" else 1e-3)   # CIFAR-10's client Adam lr


@pytest.mark.parametrize("task, k, lr", [("cifar10", 2, 0.05), ("cifar100", 3, 0.1), ("20newsgroups", 3, 0.1),
                                         ("femnist", 1, 0.025)])
def test_paper_presets_take_the_authors_fedbuff_baseline_per_task(task, k, lr):
    p = resolve(get_task(task), "paper", get_method("fedbuff"), 0, "cpu", {}, list(methods()))["method_params"]
    assert (p["buffer_size"], p["server_lr"], p["server_momentum"], p["staleness"]) == (k, lr, 0.0, "constant")


def test_fedbuffs_ci_settings_are_unchanged():
    for task in ("digits", "femnist", "cifar10", "20newsgroups"):
        p = resolve(get_task(task), "ci", get_method("fedbuff"), 0, "cpu", {}, list(methods()))["method_params"]
        assert (p["buffer_size"], p["server_lr"], p["server_momentum"]) == (5, 1.0, 0.0), task


# -- s_max ------------------------------------------------------------------------------------
def test_s_max_auto_is_the_median_staleness_of_the_schedule_in_the_methods_versions():
    plan = plan_of([0, 2, 4, 6, 8, 10], 60)           # arrival staleness 0…10 in arrivals, median 5
    m = with_plan(AFLDW, plan=plan, buffer_size=1)
    assert m.beta_spec == "cosine:s_max=5" and m.beta(5) == pytest.approx(0.5)
    two = with_plan(AFLDW, plan=plan, buffer_size=2)  # versions of two arrivals: τ = i//2 − after//2
    assert two.beta_spec == f"cosine:s_max={np.median(plan.staleness(2)):g}"
    assert with_plan(AFLDW, plan=plan_of([0, 0]), buffer_size=1).beta_spec == "cosine:s_max=1"   # at least 1
    assert with_plan(AFLDW, plan=plan, beta="cosine:s_max=9").beta_spec == "cosine:s_max=9"      # a number stays
    assert make(AFLDW).beta_spec == "cosine:s_max=75"   # no plan: the authors' value
    assert FedRevive.defaults["beta"] == AFLDW.defaults["beta"] == "cosine:s_max=auto"


def test_s_max_auto_reproduces_the_authors_75_at_paper_scale_and_shrinks_with_concurrency():
    ctx = make().ctx
    for seed in (0, 1):
        ctx.plan = paper_plan(seed=seed)
        assert auto_s_max(ctx, 1) == pytest.approx(75, rel=0.03)     # 73 on both seeds
    digits = resolve(get_task("digits"), "ci", get_method("fedrevive"), 0, "cpu", {}, list(methods()))["setup"]
    ctx.plan = run_plan(make_schedule(make_trace(digits["trace"], digits["num_clients"], 0, None),
                                      digits["concurrency"], digits["total_arrivals"], 0, False))
    assert 4 <= auto_s_max(ctx, 1) <= 8                              # 10 in flight: 6


# -- a revival everywhere, and a warning where there is none ----------------------------------
def _image_folder(root, classes=4, n=60):
    for split, k in (("train", n), ("test", 3)):
        for c in range(classes):
            for i in range(k):
                path = root / split / f"c{c}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (40 * c + i, 200 - 40 * c, 7 * i)).save(path)
    return root


def test_a_bring_your_own_ci_fedrevive_run_distils(tmp_path, monkeypatch, one_thread):
    """The measured failure: an image folder's ci run kept s_max 75 and gates 50 / 100 of its 100
    versions, so it never revived. Relative to the run it distils most arrivals."""
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "cache"))
    task = BringYourOwn(f"imagefolder:{_image_folder(tmp_path / 'imgs')}")
    cfg = resolve(task, "ci", get_method("fedrevive"), 0, "cpu", {}, list(methods()))
    summary, _ = execute(cfg, task, task.load(cfg["setup"], 0), RunOptions(tmp_path / "r"))
    resolved = summary["resolved"]
    assert resolved["run_versions"] == 100 and resolved["freeze_version"] == 1 and resolved["warmup_version"] == 1
    assert 1 <= float(resolved["beta"].removeprefix("cosine:s_max=")) <= 4     # 4 in flight: the median τ is 2
    assert summary["diagnostics"]["distilled_share"] > 0.5 and summary["diagnostics"]["mean_beta"] > 0.2
    assert summary["engaged"] is True and summary["engagement"].startswith("distilled an arrival: ")


def test_a_run_that_never_distils_says_so_in_its_output_summary_and_report(tmp_path):
    args = ["run", "--task", "digits", "--method", "fedrevive,fedbuff,gi-switch", "--results", str(tmp_path / "r"),
            "--set", "total_arrivals=20", "--set", "num_clients=10", "--set", "concurrency=4",
            "--set", "eval_every=10", "--set", "fedrevive.freeze_versions=1000", "--threads", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert ("fedrevive never distilled an arrival in this run: its gates (synthesis from version 1000, "
            "distillation after version 1) are not both passed by the run's last version 19") in text
    assert "fix: give the gates as shares of the run's versions" in text and "fedbuff never" not in text
    # gi-switch on a ci trace: no arrival is 10 versions stale, so it never inverts
    assert "gi-switch never inverted an update in this run: no arrival was at least min_staleness = 10" in text
    summary = json.loads(next((tmp_path / "r" / "digits" / "fedrevive").glob("*/summary.json")).read_text())
    assert summary["engaged"] is False and summary["syntheses"] == 0     # nothing synthesised for nothing
    board, _ = build_report(tmp_path / "r", tmp_path / "r" / "report")
    cells = board.set_index("method")["engaged"]
    assert cells["fedrevive"] == cells["gi-switch"] == "no (1/1 runs)" and cells["fedbuff"] == "—"
    assert any("digits/ci fedrevive: 1 of 1 runs" in w for w in board.attrs["warnings"])
    md = (tmp_path / "r" / "report" / "leaderboard.md").read_text()
    assert "> warning: digits/ci fedrevive: 1 of 1 runs (seed 0) never engaged" in md
    res = runner.invoke(app, ["report", "--results", str(tmp_path / "r")])
    assert "never distilled an arrival" in " ".join(res.output.split())


def test_never_engaged_message_and_other_methods():
    assert never_engaged("x", None) is None and never_engaged("x", {"engaged": True, "mechanism": "m"}) is None
    assert never_engaged("x", {"engaged": False, "mechanism": "did it", "reason": "r", "fix": "f"}) == \
        "x never did it in this run: r; fix: f"
    m = make(distillation=False)
    assert m.engagement() is None                      # AFL-DW's update: no mechanism to engage
    m = make(freeze_versions=0, warmup_versions=0, beta="fixed:0.5")
    assert m.engagement()["engaged"] is False
    arrive(m, 0, torch.zeros_like(m.params), 1)
    arrive(m, 1, torch.zeros_like(m.params), 1)
    assert m.engagement()["engaged"] is True

