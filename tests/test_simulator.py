import pandas as pd
import torch

from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.contract.method import ClientUpdate
from asyncfl_bench.config.registry import get_method, methods

from conftest import tiny_config, make_context


def _curve(tmp, digits, cfg):
    data = digits.load(cfg["setup"], cfg["seed"])
    summary, _ = execute(cfg, digits, data, RunOptions(tmp))
    return pd.read_csv(tmp / cfg["task"] / cfg["method"] / summary["run_id"] / "curve.csv"), summary


def test_same_config_and_seed_give_bit_identical_curves(tmp_path, digits):
    for name in ("fedbuff", "fedasync"):
        cfg = tiny_config(name, seed=5)
        a, _ = _curve(tmp_path / "a", digits, cfg)
        b, _ = _curve(tmp_path / "b", digits, cfg)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        c, _ = _curve(tmp_path / "c", digits, tiny_config(name, seed=6))
        assert not a["accuracy"].equals(c["accuracy"])   # and the seed matters


def test_live_base_models_never_exceed_concurrency(tmp_path, digits):
    for name in methods():
        _, summary = _curve(tmp_path, digits, tiny_config(name, total_arrivals=60, concurrency=6))
        assert 1 <= summary["max_live_bases"] <= 6, name


def test_fedbuff_with_k_equal_m_and_no_staleness_equals_fedavg(tmp_path, digits):
    # constant trace and M = N: every client is in every round, all arrive together, τ = 0
    common = dict(trace="constant", num_clients=6, concurrency=6, total_arrivals=24, eval_every=6)
    fedavg, _ = _curve(tmp_path, digits, tiny_config("fedavg-sync", **common))
    fedbuff, s = _curve(tmp_path, digits, tiny_config(
        "fedbuff", fedbuff__buffer_size=6, fedbuff__server_lr=1.0, fedbuff__server_momentum=0.0,
        fedbuff__staleness="constant", fedbuff__weight_by_samples=True, **common))
    assert s["max_staleness"] == 0
    assert list(fedbuff["version"]) == list(fedavg["version"]) == [0, 1, 2, 3, 4]
    pd.testing.assert_series_equal(fedbuff["accuracy"], fedavg["accuracy"])
    pd.testing.assert_series_equal(fedbuff["loss"], fedavg["loss"], rtol=1e-5)


def _method(name, params, **hp):
    ctx = make_context(None, num_clients=4, concurrency=2, num_classes=2)
    return get_method(name)(ctx, params, **hp)


def _update(base, params, tau, n=10, ends_round=False):
    return ClientUpdate(client=0, job=0, base_version=0, staleness=tau, base=base, params=params,
                        num_samples=n, arrival_time=1.0, ends_round=ends_round)


def test_fedasync_alpha_one_constant_replaces_the_model():
    base, client = torch.zeros(5), torch.arange(5.0)
    m = _method("fedasync", torch.ones(5), alpha=1.0, staleness="constant")
    m.receive(_update(base, client, tau=7))
    assert torch.equal(m.params, client) and m.version == 1


def test_fedasync_mixes_with_staleness_weight():
    m = _method("fedasync", torch.ones(3), alpha=0.6, staleness="polynomial:a=0.5")
    m.receive(_update(torch.zeros(3), torch.full((3,), 5.0), tau=3))
    a = 0.6 * 4 ** -0.5
    assert torch.allclose(m.params, torch.full((3,), (1 - a) * 1 + a * 5))


def test_fedbuff_buffers_k_then_steps_with_scaled_mean():
    m = _method("fedbuff", torch.zeros(2), buffer_size=2, server_lr=0.5, server_momentum=0.0)
    m.receive(_update(torch.zeros(2), torch.tensor([2.0, 0.0]), tau=0))
    assert m.version == 0 and torch.equal(m.params, torch.zeros(2))
    m.receive(_update(torch.ones(2), torch.tensor([1.0, 4.0]), tau=3))   # Δ = (0, 3), s = 1/2
    expected = 0.5 * (torch.tensor([2.0, 0.0]) + 0.5 * torch.tensor([0.0, 3.0])) / 2
    assert m.version == 1 and torch.allclose(m.params, expected)


def test_fedavg_weights_by_samples():
    m = _method("fedavg-sync", torch.zeros(1))
    m.receive(_update(torch.zeros(1), torch.tensor([1.0]), tau=0, n=30))
    assert m.version == 0                    # the round is not over yet
    m.receive(_update(torch.zeros(1), torch.tensor([5.0]), tau=0, n=10, ends_round=True))
    assert m.version == 1 and torch.allclose(m.params, torch.tensor([(30 * 1 + 10 * 5) / 40]))


def _windowed_trace_file(tmp, n=10):
    """Half the clients are online 1.5 s of every 10 with jobs of about 1 s: some of their
    jobs outlast the window and are dropped."""
    import numpy as np

    from asyncfl_bench.traces.model import Trace
    from asyncfl_bench.traces.file import write_trace
    windows = tuple(np.array([(0.0, 1.5)]) if c % 2 else None for c in range(n))
    trace = Trace(kind="test", params={}, compute_mean=np.ones(n), download=np.zeros(n), upload_mean=np.zeros(n),
                  upload_spread=np.zeros(n), jitter="exponential", availability=windows, period=np.full(n, 10.0))
    return write_trace(trace, tmp / "windows.csv")


def test_fedavg_rounds_with_dropped_jobs_stay_synchronous(tmp_path, digits):
    """A round that lost clients mid-job averages those that arrived and ends there: no
    update ever crosses into the next round (staleness 0), one version per round."""
    path = _windowed_trace_file(tmp_path)
    cfg = tiny_config("fedavg-sync", trace=str(path), total_arrivals=40, concurrency=4)
    curve, summary = _curve(tmp_path, digits, cfg)
    assert summary["dropped_jobs"] > 0 and summary["max_staleness"] == 0
    folder = tmp_path / "digits" / "fedavg-sync" / summary["run_id"]
    arrivals = pd.read_csv(folder / "arrivals.csv")
    rounds = arrivals.groupby("base_version").size()
    assert (rounds <= 4).all() and (rounds < 4).any()        # short rounds were aggregated on their own
    assert list(rounds.index) == list(range(len(rounds)))


def test_a_checkpoint_from_another_schedule_is_refused(tmp_path, digits):
    import pytest

    from asyncfl_bench.simulation import checkpoint
    from asyncfl_bench.errors import UserError
    cfg = tiny_config("fedbuff")
    data = digits.load(cfg["setup"], cfg["seed"])
    summary, _ = execute(cfg, digits, data, RunOptions(tmp_path, keep_checkpoints=True))
    ckpt = tmp_path / "digits" / "fedbuff" / summary["run_id"] / checkpoint.NAME
    state = checkpoint.load(ckpt, summary["run_id"])
    assert state["schedule_hash"] == summary["schedule_hash"]
    state["schedule_hash"] = "0" * 16
    checkpoint.save(ckpt, summary["run_id"], state)
    (ckpt.parent / "summary.json").unlink()                  # unfinished: the next run resumes
    with pytest.raises(UserError, match="checkpoint was made on schedule 0000"):
        execute(cfg, digits, data, RunOptions(tmp_path))


def test_effective_server_step_is_the_share_of_the_updates_that_moves_the_model(tmp_path, digits):
    """Σ‖x_{v+1} − x_v‖ / Σ‖Δ_i‖. One job in flight (τ = 0), FedAsync with constant
    s(τ): each arrival moves the model by exactly α·Δ, so the ratio is α."""
    for alpha in (1.0, 0.3):
        cfg = tiny_config("fedasync", concurrency=1, total_arrivals=6, fedasync__alpha=alpha,
                          fedasync__staleness="constant")
        _, summary = _curve(tmp_path / str(alpha), digits, cfg)
        assert abs(summary["effective_server_step"] - alpha) < 1e-5


def test_effective_server_step_of_two_buffered_arrivals_matches_a_hand_computation():
    """FedBuff with K = 2, η = 0.5, no momentum: one step of η·(Δ₁+Δ₂)/2 for two
    arrivals, so the ratio is 0.5·‖(1.5, 2, 1)‖ / (‖(3, 4, 0)‖ + ‖(0, 0, 2)‖)."""
    from asyncfl_bench.simulation.run import effective_server_step
    from asyncfl_bench.simulation.simulator import RunLog, measure_step

    m = _method("fedbuff", torch.zeros(3), buffer_size=2, server_lr=0.5, server_momentum=0.0,
                staleness="constant")
    log = RunLog()
    for delta in (torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.0, 0.0, 2.0])):
        before = m.params.clone()
        m.receive(_update(torch.zeros(3), delta, tau=0))
        measure_step(log.step, before, m.params, torch.zeros(3), delta)
    hand = 0.5 * (1.5 ** 2 + 2 ** 2 + 1) ** 0.5 / 7
    assert m.version == 1 and abs(effective_server_step(log.step) - hand) < 1e-6
