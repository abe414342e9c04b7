"""The estimate-error measurement (Wang & Gao's Fig. 2/7) on a few probes: its fixed points."""
from __future__ import annotations

import pytest
import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.methods.gi_switch.estimate_error import ESTIMATORS, measure, parse_params
from asyncfl_bench.tasks.digits import Digits


def test_fixed_points_of_the_estimators(one_thread):
    """Full-batch clients: the batch order does not matter, so at τ = 0 the stale update IS the
    fresh one (error 0), as is the second fresh run; DC-ASGD compensates by x_T − x_{T−τ} = 0,
    so it equals the stale update; sending nothing has relative L1 error 1. At τ = 4 the stale
    update is no longer the fresh one."""
    torch.manual_seed(0)
    frame = measure(Digits(), "ci", 0, {"clients": 1, "ends": "6", "taus": "0,4", "iterations": 3,
                                        "client": "full-batch", "buffer": 3, "rec_max": 4})
    assert set(frame["estimator"]) == set(ESTIMATORS) and len(frame) == 2 * len(ESTIMATORS)
    at = frame.set_index(["tau", "estimator"])
    for est in ("stale", "fresh-again", "dc-asgd-c", "dc-asgd-a"):
        assert at.loc[(0, est), "relative_l1"] < 1e-5 and at.loc[(0, est), "cosine_distance"] < 1e-5
    assert at.loc[(4, "stale"), "relative_l1"] > 1e-3
    assert at.loc[(4, "zero"), "relative_l1"] == pytest.approx(1.0)
    assert at.loc[(4, "gi-free"), "misfit"] >= 0 and frame["drift"].between(0, 1.0).all()


def test_parameters_are_checked():
    assert parse_params({"taus": "16,4"})["taus"] == [4, 16]
    assert parse_params(parse_params({"taus": "16"})) == parse_params({"taus": "16"})   # idempotent
    with pytest.raises(UserError, match="has no parameter 'tau'"):
        parse_params({"tau": "3"})
    with pytest.raises(UserError, match="staleness 64 exceeds every end version"):
        parse_params({"taus": "64", "ends": "48"})
