"""Tuning: search spaces, the validation split, seeded and resumable studies, the tuned file."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import typer
from typer.testing import CliRunner

from asyncfl_bench.cli.tune import tune as tune_command
from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.config.settings import run_id
from asyncfl_bench.contract.task import TaskData, evaluation_view, hold_out_proxy, hold_out_validation
from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation import executors
from asyncfl_bench.simulation.simulator import evaluate_splits
from asyncfl_bench.tasks.digits import Digits
from asyncfl_bench.tuning import study as study_module
from asyncfl_bench.tuning import tuned as tuned_file
from asyncfl_bench.tuning.space import method_space, parse_dimension
from asyncfl_bench.tuning.study import Execution, MethodStudy, TuneSpec, storage_path, trials_root, tune

from conftest import TINY, tiny_config

FAST = {**TINY, "total_arrivals": "12", "eval_every": "4"}


def make_spec(trials=3, seeds=(1000,), startup=2, sampler_seed=0, objective="mean_accuracy", method="fedbuff"):
    return TuneSpec(Digits(), "ci", "cpu", dict(FAST), (method,), trials, tuple(seeds), objective, 0.1,
                    sampler_seed, startup)


def run_tune(results, spec, method="fedbuff"):
    plans = [MethodStudy(get_method(method), method_space(get_method(method)))]
    return tune(spec, plans, results, Execution()), plans[0]


def trial_table(study):
    return [(t.number, t.state.name, t.params, t.value) for t in sorted(study.get_trials(), key=lambda t: t.number)]


def run_folders(results):
    return sorted(p.parent.name for p in trials_root(results).glob("*/*/*/summary.json"))


# -- the validation split --------------------------------------------------------------------

def _data(n=200, clients=5):
    x = torch.arange(n, dtype=torch.float32).reshape(n, 1)
    y = torch.arange(n) % 3
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    return TaskData(x, y, x[:10], y[:10], 3, list(idx.chunk(clients)))


def test_validation_split_is_disjoint_from_proxy_and_training_and_fixed_per_seed():
    base = hold_out_proxy(_data(), 0.1, seed=3)
    data = hold_out_validation(base, 0.2, seed=3)
    train = torch.cat(data.clients)
    val = data.x_val[:, 0].long()
    proxy = base.extras.proxy_x[:, 0].long()
    assert len(set(val.tolist()) & set(train.tolist())) == 0
    assert len(set(val.tolist()) & set(proxy.tolist())) == 0
    assert len(val) + len(train) + len(proxy) == 200
    for before, after in zip(base.clients, data.clients):   # a fixed share of every client
        assert len(before) - len(after) == round(0.2 * len(before))
    assert torch.equal(data.y_val, base.y_train[val])
    again = hold_out_validation(hold_out_proxy(_data(), 0.1, seed=3), 0.2, seed=3)
    assert torch.equal(again.x_val, data.x_val)
    assert not torch.equal(hold_out_validation(base, 0.2, seed=4).x_val, data.x_val)
    assert hold_out_validation(base, 0.0, seed=3) is base    # off by default: runs unchanged


def test_evaluation_view_drops_the_test_set_and_evaluate_splits_names_both():
    data = hold_out_validation(_data(), 0.2, 0)
    model = torch.nn.Linear(1, 3)
    from asyncfl_bench.training.flat import Layout
    layout = Layout.of(model)
    params = layout.flatten(model).clone()
    both = evaluate_splits(model, layout, params, data, 64)
    assert {"accuracy", "loss", "val_accuracy", "val_loss", "class_acc_0", "val_class_acc_2"} <= set(both)
    only_val = evaluate_splits(model, layout, params, evaluation_view(data, "validation"), 64)
    assert set(only_val) == {k for k in both if k.startswith("val_")}
    assert only_val["val_accuracy"] == both["val_accuracy"]
    with pytest.raises(UserError, match="validation_fraction"):
        evaluation_view(_data(), "validation")


# -- search spaces ---------------------------------------------------------------------------

def test_every_method_declares_a_valid_space_around_its_paper_value():
    for name, cls in methods().items():
        space = method_space(cls)
        assert space, name
        for dim in space.values():
            assert dim.low <= cls.defaults[dim.name] <= dim.high, (name, dim)


def test_space_errors_name_the_problem():
    fedbuff = get_method("fedbuff")
    with pytest.raises(UserError, match="has no parameter 'server_rate'"):
        method_space(fedbuff, {"server_rate": "log:low=0.1,high=1"})
    with pytest.raises(UserError, match="only numeric"):
        parse_dimension("fedbuff", "staleness", "log:low=0.1,high=1", fedbuff.defaults)
    with pytest.raises(UserError, match="low > 0"):
        parse_dimension("fedbuff", "server_lr", "log:low=0,high=1", fedbuff.defaults)
    dim = parse_dimension("fedbuff", "buffer_size", "uniform:low=2,high=8", fedbuff.defaults)
    assert dim.integer and (dim.low, dim.high) == (2, 8)


def test_cli_bad_space_key_exits_2(tmp_path):
    app = typer.Typer()
    app.command()(tune_command)
    res = CliRunner().invoke(app, ["--method", "fedbuff", "--trials", "1", "--results", str(tmp_path),
                                   "--space", "fedbuff.server_rate=log:low=0.1,high=1"])
    assert res.exit_code == 2, res.output
    assert "has no parameter 'server_rate'" in res.output
    assert not (tmp_path / "tuned").exists()


# -- studies ---------------------------------------------------------------------------------

def test_same_seed_gives_the_same_trials(tmp_path):
    spec = make_spec(trials=3, startup=2)   # trial 2 is TPE's, past the random start-up
    content_a, a = run_tune(tmp_path / "a", spec)
    content_b, b = run_tune(tmp_path / "b", spec)
    assert trial_table(a.study) == trial_table(b.study)
    assert [t[1] for t in trial_table(a.study)] == ["COMPLETE"] * 3
    assert content_a["methods"] == content_b["methods"]
    _, c = run_tune(tmp_path / "c", make_spec(trials=1, startup=2, sampler_seed=1))
    assert trial_table(c.study)[0][2] != trial_table(a.study)[0][2]


def test_tune_never_reads_the_test_split(tmp_path, monkeypatch):
    class Untouchable:
        """Stands for the test tensors: moving it is fine, reading it fails the test."""

        def to(self, *args, **kwargs):
            return self

        def __getattr__(self, name):
            raise AssertionError(f"the test set was read ({name})")

        def __len__(self):
            raise AssertionError("the test set was read (len)")

        def __getitem__(self, item):
            raise AssertionError("the test set was read (index)")

    real_load = Digits.load

    def guarded_load(self, setup, seed, data_dir):
        data = real_load(self, setup, seed, data_dir)
        data.x_test, data.y_test = Untouchable(), Untouchable()
        return data

    monkeypatch.setattr(Digits, "load", guarded_load)
    content, m = run_tune(tmp_path, make_spec(trials=1))
    assert len(trial_table(m.study)) == 1 and 0 < content["methods"]["fedbuff"]["value"] <= 1
    # the guard bites: a normal run, which evaluates on the test set, trips it
    cfg = study_module.trial_config(make_spec(), get_method("fedbuff"), 1000, {})
    cfg["setup"]["evaluate_on"] = "test"
    with pytest.raises(AssertionError, match="test set was read"):
        executors.run_one(cfg, executors.RunOptions(tmp_path / "normal"))


def test_resumed_study_continues_its_trial_count(tmp_path, monkeypatch):
    _, whole = run_tune(tmp_path / "whole", make_spec(trials=3, startup=2))
    # interrupted while trial 2 runs: trials 0 and 1 ran together (random start-up), then 2 alone
    calls = []
    real = study_module.run_trial_configs

    def interrupted(configs, results, execution):
        calls.append(len(configs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(configs, results, execution)

    monkeypatch.setattr(study_module, "run_trial_configs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_tune(tmp_path / "cut", make_spec(trials=3, startup=2))
    assert calls == [2, 1]
    monkeypatch.setattr(study_module, "run_trial_configs", real)
    _, resumed = run_tune(tmp_path / "cut", make_spec(trials=3, startup=2))
    assert trial_table(resumed.study) == trial_table(whole.study)   # trial 2 reran with its stored values
    assert len(run_folders(tmp_path / "cut")) == 3                  # and trials 0, 1 were not redone
    # a larger budget extends the study: the same first three, one new trial, one new run
    _, extended = run_tune(tmp_path / "cut", make_spec(trials=4, startup=2))
    assert trial_table(extended.study)[:3] == trial_table(whole.study)
    assert len(trial_table(extended.study)) == 4 and len(run_folders(tmp_path / "cut")) == 4


def test_corrupt_study_database_exits_2_and_is_kept(tmp_path):
    db = storage_path(tmp_path, "digits", "ci")
    db.parent.mkdir(parents=True)
    db.write_bytes(b"not a database" * 64)
    app = typer.Typer()
    app.command()(tune_command)
    args = ["--method", "fedbuff", "--trials", "1", "--results", str(tmp_path)]
    for key, value in FAST.items():
        args += ["--set", f"{key}={value}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "unreadable" in res.output and "move it away" in res.output
    assert db.read_bytes() == b"not a database" * 64
    assert not run_folders(tmp_path)


# -- the tuned file and run --tuned ----------------------------------------------------------

@pytest.fixture(scope="module")
def tuned_results(tmp_path_factory):
    """One 1-trial tune; tests copy its results folder before changing anything."""
    results = tmp_path_factory.mktemp("tuned")
    content, _ = run_tune(results, make_spec(trials=1))
    tuned_file.write(tuned_file.default_path(results, "digits", "ci"), content)
    return results


@pytest.fixture
def tuned_path(tuned_results, tmp_path):
    shutil.copytree(tuned_results, tmp_path, dirs_exist_ok=True)
    return tuned_file.default_path(tmp_path, "digits", "ci")


def _report_config(seed=0, **over):
    return tiny_config("fedbuff", seed=seed, **{k: v for k, v in FAST.items() if k not in over}, **over)


def test_tuned_file_records_the_budget_and_run_tuned_applies_it(tuned_path):
    tuned = json.loads(tuned_path.read_text())
    assert tuned["budget"]["trials"] == 1 and tuned["tuning_seeds"] == [1000]
    assert tuned["objective"] == "mean_accuracy" and tuned["validation_fraction"] == 0.1
    assert tuned["storage"].endswith("tuned/digits-ci.db") and (tuned_path.parent / "digits-ci.db").is_file()
    best = tuned["methods"]["fedbuff"]["params"]
    plain = _report_config()
    applied, = tuned_file.apply([plain], tuned_path)
    assert applied["method_params"]["server_lr"] == best["server_lr"] != plain["method_params"]["server_lr"]
    assert applied["setup"]["validation_fraction"] == 0.1 and applied["setup"]["evaluate_on"] == "test"
    assert applied["tuning"]["trials"] == 1
    assert run_id(applied) != run_id(plain)


def test_run_tuned_refuses_mismatches(tuned_path, tmp_path):
    other = dict(_report_config())
    other["preset"] = "small"
    with pytest.raises(UserError, match="preset 'ci', not 'digits' preset 'small'"):
        tuned_file.apply([other], tuned_path)
    with pytest.raises(UserError, match="was a tuning seed"):
        tuned_file.apply([_report_config(seed=1000)], tuned_path)
    with pytest.raises(UserError, match="setup local.lr="):
        tuned_file.apply([_report_config(local__lr=0.05)], tuned_path)
    fedasync = dict(_report_config(), method="fedasync")
    with pytest.raises(UserError, match="no tuned values for 'fedasync'"):
        tuned_file.apply([fedasync], tuned_path)


def test_tuned_file_of_another_budget_is_not_overwritten(tuned_path, tmp_path):
    before = tuned_path.read_bytes()
    content, _ = run_tune(tmp_path, make_spec(trials=2))
    with pytest.raises(UserError, match="another budget"):
        tuned_file.write(tuned_path, content)
    assert tuned_path.read_bytes() == before


def test_run_tuned_auto_runs_with_the_tuned_values_and_records_the_budget(tuned_path):
    from asyncfl_bench.cli import app
    results = tuned_path.parent.parent
    args = ["run", "--method", "fedbuff", "--seeds", "0", "--results", str(results), "--tuned", "auto"]
    for key, value in FAST.items():
        args += ["--set", f"{key}={value}"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    [config] = [json.loads(p.read_text()) for p in (results / "digits" / "fedbuff").glob("*/config.json")]
    best = json.loads(tuned_path.read_text())["methods"]["fedbuff"]["params"]
    assert config["method_params"]["server_lr"] == best["server_lr"]
    assert config["tuning"]["trials"] == 1 and config["setup"]["evaluate_on"] == "test"
    bad = CliRunner().invoke(app, [a if a != "auto" else str(results / "missing.json") for a in args])
    assert bad.exit_code == 2 and "no tuned file" in bad.output


# -- the budget's shape: TPE's start-up and values at a range edge ---------------------------

def test_startup_trials_scale_with_the_budget():
    from asyncfl_bench.tuning.study import startup_trials_for
    assert [startup_trials_for(n) for n in (1, 8, 12, 20, 40, 200)] == [2, 2, 3, 5, 10, 10]


def test_a_best_value_near_a_range_edge_is_flagged_in_the_tuned_file(tuned_path):
    from asyncfl_bench.tuning.study import at_edge
    dim = parse_dimension("fedasync", "alpha", "log:low=0.1,high=1.0", get_method("fedasync").defaults)
    # log scale: 0.94 is 97 % of the way from 0.1 to 1, 0.3 is 48 %
    assert at_edge(0.94, dim) == "high" and at_edge(0.105, dim) == "low" and at_edge(0.3, dim) is None
    lin = parse_dimension("fedasync", "alpha", "uniform:low=0.0,high=1.0", get_method("fedasync").defaults)
    assert at_edge(0.96, lin) == "high" and at_edge(0.5, lin) is None
    entry = json.loads(tuned_path.read_text())["methods"]["fedbuff"]
    dim = parse_dimension("fedbuff", "server_lr", entry["space"]["server_lr"], get_method("fedbuff").defaults)
    assert entry["at_range_edge"] == ({"server_lr": at_edge(entry["params"]["server_lr"], dim)}
                                      if at_edge(entry["params"]["server_lr"], dim) else {})
