"""The digits split is kept as arrays in the data cache, so that runs after the first
start without importing scikit-learn; the arrays are the split itself."""
import subprocess
import sys

import numpy as np

from asyncfl_bench.tasks import digits


def fresh_split(monkeypatch, cache):
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(cache))
    digits._digits.cache_clear()
    try:
        return digits._digits()
    finally:
        digits._digits.cache_clear()


def test_cached_split_equals_scikit_learns_and_is_rewritten_when_unreadable(monkeypatch, tmp_path):
    truth = digits._split_from_scikit_learn()
    first = fresh_split(monkeypatch, tmp_path)
    path = digits.split_cache_path()
    assert path.is_file() and path.parent.parent == tmp_path
    again = fresh_split(monkeypatch, tmp_path)       # read from the file
    for a, b, c in zip(truth, first, again):
        assert a.dtype == b.dtype == c.dtype and np.array_equal(a, b) and np.array_equal(a, c)
    path.write_bytes(b"not an npz")
    repaired = fresh_split(monkeypatch, tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(truth, repaired))
    assert np.load(path, allow_pickle=False)["y_test"].shape == truth[3].shape


def test_a_run_with_the_cached_split_does_not_import_scikit_learn(monkeypatch, tmp_path):
    fresh_split(monkeypatch, tmp_path)
    code = ("import sys; from asyncfl_bench.tasks.digits import Digits; "
            "d = Digits().load({'partition': 'iid', 'num_clients': 4, 'alpha': 1.0, 'min_samples': 1}, 0); "
            "print(len(d.y_train), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"ASYNCFL_BENCH_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["1437", "False"]
