"""benchmarks/server_flops.py counts client and server FLOPs apart, and leaves the classes
it instruments as they were."""
import importlib.util
from pathlib import Path

from asyncfl_bench.config.registry import get_method, get_task
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.simulation.simulator import Simulator

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "server_flops.py"
TINY = {"num_clients": 6, "concurrency": 3, "total_arrivals": 12, "eval_every": 6}


def test_fedbuff_server_is_free_and_distillation_is_not(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))   # its helper module lies beside it
    spec = importlib.util.spec_from_file_location("server_flops_bench", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    task = get_task("digits")
    train, fedbuff_receive = Simulator._train, get_method("fedbuff").__dict__.get("receive")
    flops = {}
    for name in ("fedbuff", "fedecho"):
        config = resolve(task, "ci", get_method(name), 0, "cpu", TINY, [name])
        _, flops[name] = bench.run_counting(config, task, task.load(config["setup"], 0))
    assert flops["fedbuff"]["server"] == 0 < flops["fedbuff"]["client"]
    assert flops["fedecho"]["server"] > 0   # the ensemble's predictions and the distillation
    # clients: the same schedule and local training, so the same FLOPs
    assert flops["fedecho"]["client"] == flops["fedbuff"]["client"]
    assert Simulator._train is train and get_method("fedbuff").__dict__.get("receive") is fedbuff_receive
