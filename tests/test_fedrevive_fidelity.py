"""FedRevive against the authors' code path: the class proportions q_k, the probes'
input space, the AFL-DW control, and the diagnostics in the summary."""
import math

import pandas as pd
import pytest
import torch

from asyncfl_bench.config.registry import get_method, get_task, methods
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.distill.generator import ImageGenerator
from asyncfl_bench.methods.distill.synthesis import GeneratorSource
from asyncfl_bench.methods.fedrevive import FedRevive
from asyncfl_bench.methods.fedrevive.afl_dw import AFLDW
from asyncfl_bench.simulation.run import RunOptions, execute, prepare_data
from asyncfl_bench.tasks.models import Standardize

from conftest import tiny_config
from fedrevive_setup import arrive, counts_of, make



# -- q_k ----------------------------------------------------------------------------
def test_histogram_q_is_the_clients_label_counts_normalised():
    m = make(freeze_versions=100)                 # the default: class_proportions=histogram
    for c in (0, 1, 2):
        arrive(m, c, torch.zeros_like(m.params), 0)
    for t in m.teachers:
        counts = counts_of(t.client).float()
        assert torch.equal(t.q, counts / counts.sum())
    assert m.proxy.counts == {}                   # no probing in this mode
    assert m.metrics()["diagnostics"]["q_tv_distance"] == 0.0


def test_histogram_q_needs_the_counts_to_travel_with_the_update():
    m = make(freeze_versions=100)
    base = m.params.clone()
    with pytest.raises(UserError, match="class_proportions=probe"):
        m.receive(ClientUpdate(client=0, job=0, base_version=0, staleness=0, base=base, params=base,
                               num_samples=1, arrival_time=0.0, payload=m.payload(0)))
    with pytest.raises(UserError, match="histogram, probe"):
        make(class_proportions="labels")


def test_updates_carry_each_clients_true_label_histogram(tmp_path, digits, monkeypatch):
    """The simulator ships bincount(y of the client's training data) with every update."""
    cfg = tiny_config("fedrevive", fedrevive__freeze_versions=1000, total_arrivals=60)
    data = prepare_data(digits.load(cfg["setup"], cfg["seed"]), cfg["setup"], cfg["seed"])
    seen = {}
    real = FedRevive.observe

    def spy(self, update):
        seen.setdefault(update.client, []).append(update.label_counts.clone())
        real(self, update)
    monkeypatch.setattr(FedRevive, "observe", spy)
    execute(cfg, digits, digits.load(cfg["setup"], cfg["seed"]), RunOptions(tmp_path))
    assert sum(len(v) for v in seen.values()) == int(cfg["setup"]["total_arrivals"])
    for client, sent in seen.items():
        truth = torch.bincount(data.y_train[data.clients[client]], minlength=10)
        assert all(torch.equal(s, truth) for s in sent)


# -- probes in the model's normalised input space -------------------------------------
def test_probes_are_standard_normal_after_the_models_standardisation():
    mean, std = [0.2, 0.5, 0.7], [0.1, 0.3, 0.05]
    source = GeneratorSource(ImageGenerator((3, 8, 8), nz=8, ngf=4), 10, torch.Generator().manual_seed(3),
                             input_mean=mean, input_std=std)
    probes = source.probe_inputs(64)
    eps = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(3))   # the same draw
    assert torch.allclose(Standardize(mean, std)(probes), eps, atol=1e-5)
    # in raw pixel units they are not N(0, 1): each channel sits at its mean with its std
    assert probes.mean(dim=(0, 2, 3)) == pytest.approx(mean, abs=0.03)
    plain = GeneratorSource(ImageGenerator((3, 8, 8), nz=8, ngf=4), 10, torch.Generator().manual_seed(3))
    assert torch.equal(plain.probe_inputs(64), eps)    # a model without input scaling reads ε as is


def test_probe_mode_reads_the_tasks_normalisation_and_measures_its_distance_to_the_histogram():
    extras = {"input_shape": (1, 8, 8), "mean": [0.3], "std": [0.2]}
    m = make(extras=extras, class_proportions="probe", freeze_versions=100)
    assert m.synthesis_source.input_mean == [0.3] and m.synthesis_source.input_std == [0.2]
    arrive(m, 0, torch.zeros_like(m.params), 0)
    q = m.teachers.q_matrix()[0]
    h = counts_of(0).float() / 10
    assert m.metrics()["diagnostics"]["q_tv_distance"] == pytest.approx(0.5 * float((q - h).abs().sum()))


# -- AFL-DW ---------------------------------------------------------------------------
def test_afl_dw_is_registered_with_the_authors_control_settings():
    assert get_method("afl-dw") is AFLDW
    # s_max from the run (the authors' 75 at paper scale: test_fedrevive_scale)
    assert AFLDW.defaults == {"buffer_size": 1, "server_lr": 0.1, "beta": "cosine:s_max=auto"}


def test_afl_dw_downweights_every_arrival_with_no_gate():
    m = make(AFLDW, beta="cosine:s_max=4", server_lr=0.5)
    delta = torch.full_like(m.params, 0.1)
    for tau, beta in [(0, 0.0), (4, 0.5), (8, 1.0)]:
        base = arrive(m, 0, delta, tau)
        assert torch.allclose(m.params, base + 0.5 * (1 - beta) * delta, atol=1e-7)
    assert m.metrics()["diagnostics"]["mean_beta"] == pytest.approx(0.5)


def test_afl_dw_equals_fedrevive_without_distillation_bit_for_bit(tmp_path, digits):
    over = {"total_arrivals": 60}
    runs = {}
    for method, extra in (("afl-dw", {}), ("fedrevive", {"fedrevive__distillation": "false"})):
        cfg = tiny_config(method, seed=2, **over, **extra)
        cfg["method_params"] = {**cfg["method_params"],
                                "beta": "cosine:s_max=3", "server_lr": 0.3, "buffer_size": 2}
        summary, _ = execute(cfg, digits, digits.load(cfg["setup"], cfg["seed"]), RunOptions(tmp_path / method))
        curve = pd.read_csv(tmp_path / method / "digits" / method / summary["run_id"] / "curve.csv")
        runs[method] = (summary, curve)
    (a, ca), (f, cf) = runs["afl-dw"], runs["fedrevive"]
    pd.testing.assert_frame_equal(ca, cf, check_exact=True)
    assert a["final_accuracy"] == f["final_accuracy"] and a["effective_server_step"] == f["effective_server_step"]
    assert f["syntheses"] == 0 and f["distillations"] == 0
    assert a["diagnostics"]["mean_beta"] == f["diagnostics"]["mean_beta"] > 0


# -- diagnostics ------------------------------------------------------------------------
def test_diagnostics_match_a_hand_computation_on_two_arrivals():
    """Arrival 1: client 0, τ = 2, distilled; arrival 2: client 1, τ = 0 (β = 0), not distilled."""
    m = make(beta="cosine:s_max=4", freeze_versions=0, server_lr=1.0, class_proportions="probe")
    q_used = {0: torch.tensor([0.5, 0.5] + [0.0] * 8), 1: torch.full((10,), 0.1)}
    m._proxy = lambda update: q_used[update.client]
    kd = torch.full_like(m.params, 0.02)

    def fake_distillation():
        m.log["distillations"] += 1
        return kd
    m._distilled_delta = fake_distillation
    arrive(m, 0, torch.full_like(m.params, 0.1), 2)
    arrive(m, 1, torch.full_like(m.params, -0.3), 0)
    beta = 1 - 0.5 * (1 + math.cos(math.pi / 4))                  # β(2) with s_max = 4: 0.1464
    # every coordinate alike, so norms scale together: ‖Δ^KD‖/‖Δ‖ = 0.02/0.1 = 0.2 and
    # ‖β·Δ^KD‖/‖(1 − β)·Δ‖ = 0.2·β/(1 − β) = 0.0343
    ratio = 0.2 * beta / (1 - beta)
    # h_0 = (.6 at 0, .3 at 2, .1 at 9): ½(|.5−.6| + |.5| + |.3| + |.1|) = 0.5
    # h_1 = (.6 at 1, .3 at 3, .1 at 9) against uniform .1: ½(7·.1 + .5 + .2 + 0) = 0.7
    tv0, tv1 = 0.5, 0.7
    assert ratio == pytest.approx(0.034315, abs=1e-6)
    assert m.metrics()["diagnostics"] == pytest.approx({
        "kd_to_raw_norm_ratio": ratio, "kd_to_delta_norm_ratio": 0.2, "mean_beta": beta / 2,
        "distilled_share": 0.5, "q_tv_distance": (tv0 + tv1) / 2})


def test_diagnostics_reach_the_summary_and_are_deterministic(tmp_path, digits):
    over = {"fedrevive__freeze_versions": 3, "fedrevive__warmup_versions": 6, "fedrevive__teachers": 2,
            "fedrevive__kd_steps": 2, "fedrevive__synth_batch": 8, "fedrevive__nz": 16, "fedrevive__ngf": 8}
    cfg = tiny_config("fedrevive", seed=1, **over)
    summaries = [execute(cfg, digits, digits.load(cfg["setup"], cfg["seed"]), RunOptions(tmp_path / sub))[0]
                 for sub in ("a", "b")]
    diag = summaries[0]["diagnostics"]
    assert diag == summaries[1]["diagnostics"]
    assert set(diag) == {"kd_to_raw_norm_ratio", "kd_to_delta_norm_ratio", "mean_beta", "distilled_share",
                         "q_tv_distance"}
    assert diag["q_tv_distance"] == 0.0 and 0 < diag["distilled_share"] < 1 and diag["kd_to_raw_norm_ratio"] > 0
    assert diag["distilled_share"] == summaries[0]["distillations"] / int(cfg["setup"]["total_arrivals"])


# -- presets ------------------------------------------------------------------------------
def test_afl_dw_takes_fedrevives_aggregation_in_each_preset(digits):
    for task, preset in (("digits", "ci"), ("femnist", "ci"), ("femnist", "small"), ("femnist", "paper"),
                         ("cifar10", "paper"), ("cifar100", "paper"), ("20newsgroups", "ci")):
        t = get_task(task)
        revive = resolve(t, preset, get_method("fedrevive"), 0, "cpu", {}, list(methods()))["method_params"]
        dw = resolve(t, preset, get_method("afl-dw"), 0, "cpu", {}, list(methods()))["method_params"]
        assert dw == {k: revive[k] for k in ("buffer_size", "server_lr", "beta")}
