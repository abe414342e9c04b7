"""benchmarks/vs_flsim.py exports the suite's own FedBuff workload for FLSim to replay (the
FLSim side needs FLSim installed and is not run here)."""
import importlib.util
import py_compile
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from asyncfl_bench.config.registry import get_task
from asyncfl_bench.simulation.run import build_schedule, build_trace, prepare_data
from asyncfl_bench.tasks.models import SmallCNN

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def vs_flsim():
    sys.path.insert(0, str(BENCH))   # its helper module lies beside it
    try:
        spec = importlib.util.spec_from_file_location("vs_flsim_bench", BENCH / "vs_flsim.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_workload_is_the_suites_run_and_loads_without_unpickling(vs_flsim, tmp_path):
    path = tmp_path / "workload.pt"
    vs_flsim.export_workload(1, path)
    w = torch.load(path, weights_only=True)          # as the FLSim side reads it
    config = vs_flsim.suite_config(1)
    setup = config["setup"]
    task = get_task("digits")
    data = prepare_data(task.load(setup, 1), setup, 1)
    # the data view the run trains on: the proxy hold-out is gone from the clients' samples
    assert torch.equal(w["x_train"], data.x_train.float()) and torch.equal(w["y_test"], data.y_test)
    assert all(torch.equal(a, b) for a, b in zip(w["clients"], data.clients))
    # the seed's initial model, loadable into the class the FLSim side builds
    torch.manual_seed(1)
    model = task.model_builder(setup, data)()
    twin = SmallCNN(*w["model_args"])
    twin.load_state_dict(w["init_state"])           # strict: same parameter names and shapes
    assert all(torch.equal(a, b) for a, b in zip(twin.state_dict().values(), model.state_dict().values()))
    # every job of the run's schedule, in dispatch order, on a grid FLSim's time sums keep exact
    schedule = build_schedule(config, False, build_trace(config, data))
    rows = w["schedule"].numpy()
    assert len(rows) == len(schedule) == setup["total_arrivals"]
    assert (np.diff(rows[:, 1]) >= 0).all() and (rows[:, 2] > rows[:, 1]).all()
    assert sorted(rows[:, 0].astype(int).tolist()) == sorted(schedule.client.tolist())
    assert np.allclose(np.sort(rows[:, 2]), np.sort(schedule.arrival_time), atol=2.0 ** -20)
    assert (rows[:, 1:] * 2 ** 20 == np.round(rows[:, 1:] * 2 ** 20)).all()
    assert (w["buffer_size"], w["server_lr"], w["lr"], w["batch_size"]) == (5, 1.0, 0.1, 16)


def test_flsim_side_is_valid_python():
    py_compile.compile(str(BENCH / "flsim_fedbuff.py"), doraise=True)
