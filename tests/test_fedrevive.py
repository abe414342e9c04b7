"""FedRevive: the hybrid update, its gates and schedule, and an end-to-end tiny run."""
import pandas as pd
import pytest
import torch

from asyncfl_bench.contract.task import TaskExtras

from asyncfl_bench.config.settings import resolve
from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.methods.fedrevive import FedRevive
from asyncfl_bench.config.registry import get_method, methods

from conftest import tiny_config
from fedrevive_setup import arrive, make



def test_hybrid_update_mixes_raw_and_distilled_deltas_by_beta():
    m = make(beta="cosine:s_max=4", freeze_versions=0, server_lr=0.5)
    kd = torch.full_like(m.params, 0.01)
    m._distilled_delta = lambda: kd
    delta = torch.full_like(m.params, 0.1)
    for client, (tau, beta) in enumerate([(0, 0.0), (4, 0.5), (8, 1.0)]):
        base = arrive(m, client, delta, tau)
        expected = base + 0.5 * ((1 - beta) * delta + beta * kd)
        assert torch.allclose(m.params, expected, atol=1e-6), tau
    assert m.metrics()["revived_updates"] == 2                 # β(0) = 0: no distillation


def test_no_revival_before_the_freeze_gate():
    m = make(freeze_versions=3, beta="fixed:1.0", server_lr=1.0)
    calls = []
    m._distilled_delta = lambda: calls.append(m.version) or torch.zeros_like(m.params)
    for i in range(5):
        arrive(m, i % 4, torch.zeros_like(m.params), 2)
    assert calls == [3, 4]


def test_warmup_synthesises_only_then_distils_every_arrival_with_synthesis_every_t_gen():
    m = make(freeze_versions=1, warmup_versions=3, synth_every=2, beta="fixed:0.5", server_lr=1.0)
    deltas = []
    for i in range(8):
        before = m.params.clone()
        arrive(m, i % 4, torch.zeros_like(m.params), 1)
        deltas.append((m.version - 1, (m.params - before).abs().max().item()))
    # versions 1..3: synthesis only, Δ^KD = 0 → u = (1 − β)·0 = 0; later the student moves
    assert all(d == 0 for v, d in deltas if v <= 3)
    assert all(d > 0 for v, d in deltas if v > 3)
    met = m.metrics()
    assert met["syntheses"] == 4                                 # versions 1, 3, 5, 7
    assert met["distillations"] == 4                             # versions 4..7
    assert met["pool_size"] == 4 * 8 and met["synthesis_seconds"] > 0


def test_teacher_buffer_and_proxies_come_from_uploads():
    m = make(freeze_versions=100, teachers=3, class_proportions="probe")
    stats = [(torch.zeros(4), torch.ones(4)), (torch.zeros(8), torch.ones(8))]
    for c in range(5):
        arrive(m, c % 4, torch.zeros_like(m.params), 0, stats=stats)
    assert [t.client for t in m.teachers] == [0, 3, 2]
    assert all(len(t.stats) == 2 for t in m.teachers)
    assert m.proxy.counts == {0: 2, 1: 1, 2: 1, 3: 1}            # client 0 probed twice
    assert all(t.q.sum().item() == pytest.approx(1.0) for t in m.teachers)


def test_bad_settings_are_user_errors():
    with pytest.raises(UserError):
        make(beta="cosine:s_max=-1")
    with pytest.raises(UserError):
        make(teachers=0)
    ctx = make().ctx
    ctx.extras = TaskExtras()
    with pytest.raises(UserError, match="input_shape"):
        FedRevive(ctx, torch.zeros(ctx.layout.size))


def test_beta_ablation_override_resolves_from_the_command_line(digits):
    cfg = resolve(digits, "ci", get_method("fedrevive"), 0, "cpu", {"fedrevive.beta": "fixed:0.5"}, list(methods()))
    assert cfg["method_params"]["beta"] == "fixed:0.5"


def test_tiny_run_records_stats_revives_and_is_deterministic(tmp_path, digits):
    # s_max = 8 (not auto: 2 here, the median τ with 4 in flight): β small enough that 30
    # arrivals at η_g = 0.1 lift the accuracy above 0.2
    over = dict(fedrevive__freeze_versions=3, fedrevive__warmup_versions=6, fedrevive__teachers=2,
                fedrevive__kd_steps=2, fedrevive__synth_batch=8, fedrevive__nz=16, fedrevive__ngf=8,
                fedrevive__beta="cosine:s_max=8")
    cfg = tiny_config("fedrevive", seed=1, **over)
    data = digits.load(cfg["setup"], cfg["seed"])
    runs = []
    for sub in ("a", "b"):
        summary, _ = execute(cfg, digits, data, RunOptions(tmp_path / sub))
        runs.append((summary, pd.read_csv(tmp_path / sub / "digits" / "fedrevive" / summary["run_id"] / "curve.csv")))
    (s, a), (_, b) = runs
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert s["distillations"] > 0 and s["syntheses"] > 0 and s["pool_size"] > 0
    assert s["synthesis_seconds"] > 0 and s["server_ms_per_arrival"] > 0
    assert s["final_accuracy"] > 0.2
