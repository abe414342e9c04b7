"""`run --task T --method all --preset P` gets past every pre-run check on every built-in
task and preset: the preflight (data view, model, trace, schedule and every method built)
runs on small stand-in data with the real data's classes and shapes, so no preset can stop
`--method all` again. Text tasks need an encoder that CI lacks: their presets are checked
for what stopped them before (the proxy hold-out every method shares)."""
import numpy as np
import pytest

from asyncfl_bench.config.registry import get_method, get_task, method_names, tasks
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.data.corpus import Corpus, Split
from asyncfl_bench.simulation.run import preflight
from asyncfl_bench.tasks.image import CorpusImageTask
from asyncfl_bench.traces.generators import check_spec

# the shapes and class counts of the real data sets; writers for FEMNIST's natural partition
STAND_INS = {"cifar10": ((3, 32, 32), 10, None), "cifar100": ((3, 32, 32), 100, None),
             "femnist": ((1, 28, 28), 62, 200)}
BUILT_IN = ("digits", "femnist", "cifar10", "cifar100", "20newsgroups")


def _stand_in(shape, num_classes, writers, n_train=2400, n_test=400) -> Corpus:
    rng = np.random.default_rng(0)

    def split(n):
        y = np.arange(n) % num_classes   # every class in both splits
        group = None if writers is None else np.arange(n) % writers
        return Split(rng.integers(0, 256, (n, *shape), dtype=np.uint8), y.astype(np.int64), group)

    return Corpus("image", split(n_train), split(n_test), [f"c{i}" for i in range(num_classes)], "stand-in")


def _cases():
    for name in BUILT_IN:
        if name in tasks():
            for preset in get_task(name).presets:
                yield name, preset


@pytest.mark.parametrize("task_name,preset", list(_cases()))
def test_method_all_passes_the_pre_run_checks(task_name, preset, monkeypatch):
    task = get_task(task_name)
    names = method_names("all")
    configs = [resolve(task, preset, get_method(n), 0, "cpu", {}, names) for n in names]
    # every method holds out the same proxy share, so FedEcho's held-out U exists everywhere
    assert {c["setup"]["proxy_fraction"] for c in configs} == {configs[0]["setup"]["proxy_fraction"]} and \
        configs[0]["setup"]["proxy_fraction"] > 0
    if task_name == "20newsgroups":
        return   # the encoder is an optional extra; the text path's preflight is tested in test_text
    if isinstance(task, CorpusImageTask):
        monkeypatch.setattr(type(task), "corpus", lambda self, setup, data_dir: _stand_in(*STAND_INS[task_name]))
    for spec, n_clients in {(c["setup"]["trace"], c["setup"]["num_clients"]) for c in configs}:
        check_spec(spec, n_clients)
    preflight(configs, task, task.load(configs[0]["setup"], 0))
