"""Each supported on-disk layout, on tiny generated data."""
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from PIL import Image

from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.data import formats
from asyncfl_bench.data.formats import Tree, read_any
from asyncfl_bench.errors import UserError
from asyncfl_bench.simulation.run import RunOptions, execute
from asyncfl_bench.tasks.byo import BringYourOwn


def _png(path, value, mode="RGB", size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, (size, size), value if mode == "L" else (value, 0, 255 - value)).save(path)


def _tar(src, dest):
    with tarfile.open(dest, "w:gz") as t:
        t.add(src, arcname=src.name)
    return dest


def test_imagefolder_with_splits_folder_and_tarball(tmp_path):
    root = tmp_path / "imgs"
    for split, n in (("train", 3), ("test", 1)):
        for ci, cls in enumerate(("cat", "dog")):
            for i in range(n):
                _png(root / split / cls / f"{i}.png", 10 + 100 * ci)
    for path in (root, _tar(root, tmp_path / "imgs.tar.gz")):
        c = read_any(path, ("imagefolder",))
        assert c.class_names == ["cat", "dog"] and c.kind == "image"
        assert c.train.x.shape == (6, 3, 8, 8) and c.train.x.dtype == np.uint8
        assert c.test.y.tolist() == [0, 1]
        assert c.train.x[c.train.y == 1][:, 0].min() == 110     # red channel carries the class


def test_imagefolder_without_splits_holds_out_a_fixed_stratified_test(tmp_path):
    for cls in ("a", "b"):
        for i in range(10):
            _png(tmp_path / "flat" / cls / f"{i}.png", 50, mode="L")
    c1, c2 = (read_any(tmp_path / "flat", ("imagefolder",)) for _ in range(2))
    assert c1.train.x.shape[1] == 1                              # greyscale stays one channel
    assert np.bincount(c1.test.y).tolist() == [2, 2] and len(c1.train) == 16
    assert np.array_equal(c1.test.x, c2.test.x)


def test_imagefolder_mixed_sizes_need_image_size(tmp_path):
    _png(tmp_path / "m" / "train" / "a" / "0.png", 1, size=8)
    _png(tmp_path / "m" / "test" / "a" / "0.png", 1, size=9)
    with pytest.raises(UserError, match="image_size"):
        read_any(tmp_path / "m", ("imagefolder",))
    assert read_any(tmp_path / "m", ("imagefolder",), image_size=4).test.x.shape == (1, 3, 4, 4)


def _cifar_records(n, label_bytes, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, (n, label_bytes), dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return labels, pixels, np.concatenate([labels, pixels], axis=1).tobytes()


def test_cifar10_binary(tmp_path):
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    expect = []
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        labels, pixels, blob = _cifar_records(4, 1, i)
        (d / name).write_bytes(blob)
        expect.append((labels[:, 0], pixels))
    (d / "batches.meta.txt").write_text("\n".join(f"c{i}" for i in range(10)) + "\n\n")
    c = read_any(_tar(d, tmp_path / "cifar-10-binary.tar.gz"), ("cifar-binary",))
    assert c.class_names == [f"c{i}" for i in range(10)]
    assert c.train.x.shape == (20, 3, 32, 32) and len(c.test) == 4
    assert c.train.y[:4].tolist() == expect[0][0].tolist()
    assert np.array_equal(c.test.x.reshape(4, -1), expect[5][1])     # channel-major, as the format stores


def test_cifar100_binary_uses_the_fine_label(tmp_path):
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    labels, _, blob = _cifar_records(5, 2, 0)
    (d / "train.bin").write_bytes(blob)
    (d / "test.bin").write_bytes(blob)
    c = read_any(d, ("cifar-binary",))
    assert c.train.y.tolist() == labels[:, 1].tolist() and c.num_classes == 100


def _cifar_python(tmp_path, extra=None):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        doc = {"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), "labels": [1, 2, 3]}
        (d / name).write_bytes(pickle.dumps(extra or doc, protocol=2))
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"k{i}" for i in range(10)]}, protocol=2))
    return d


def test_cifar_python_is_refused_unless_it_matches_the_official_checksums(tmp_path):
    d = _cifar_python(tmp_path)
    with pytest.raises(UserError, match="official checksum"):
        read_any(d, ("cifar-python",))


def test_cifar_python_reads_arrays_once_checksums_match(tmp_path, monkeypatch):
    d = _cifar_python(tmp_path)
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in d.iterdir()}
    monkeypatch.setitem(formats.CIFAR_PY_MD5, "cifar-10-batches-py", sums)
    c = read_any(d, ("cifar-python",))
    assert c.train.x.shape == (15, 3, 32, 32) and c.train.y.tolist()[:3] == [1, 2, 3]
    assert c.class_names[0] == "k0"


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_cifar_python_unpickler_builds_only_arrays(tmp_path, monkeypatch):
    d = _cifar_python(tmp_path, extra={"data": _Evil(), "labels": [1]})
    sums = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in d.iterdir()}
    monkeypatch.setitem(formats.CIFAR_PY_MD5, "cifar-10-batches-py", sums)
    with pytest.raises(UserError, match="refusing to unpickle .*print"):
        read_any(d, ("cifar-python",))


def _leaf(root, split, users, shard=0):
    doc = {"users": [], "num_samples": [], "user_data": {}}
    for u, labels in users.items():
        doc["users"].append(u)
        doc["num_samples"].append(len(labels))
        doc["user_data"][u] = {"x": [[lab / 61] * 784 for lab in labels], "y": labels}
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / split / f"all_data_{shard}_{split}.json").write_text(json.dumps(doc))


def test_leaf_json_keeps_writers_across_splits_and_files(tmp_path):
    root = tmp_path / "femnist"
    _leaf(root, "train", {"w1": [0, 1, 61], "w2": [5]}, 0)
    _leaf(root, "train", {"w3": [7, 7]}, 1)
    _leaf(root, "test", {"w2": [5], "w1": [0]})
    for path in (root, _tar(root, tmp_path / "femnist.tar.gz")):
        c = read_any(path, ("leaf",))
        assert c.num_classes == 62 and c.class_names[10] == "A" and c.class_names[61] == "z"
        assert c.train.x.shape == (6, 1, 28, 28)
        assert c.train.x[2].max() == 255 and c.train.x[0].max() == 0
        w = dict(zip(c.extras["writers"], range(10)))
        assert c.train.group.tolist() == [w["w1"]] * 3 + [w["w2"], w["w3"], w["w3"]]
        assert c.test.group.tolist() == [w["w2"], w["w1"]]          # same ids in the test split


def _bydate(root):
    for split, docs in (("train", {"alt.atheism": ["God?", "no"], "sci.space": ["rockets \xe9"]}),
                        ("test", {"alt.atheism": ["maybe"], "sci.space": ["moon"]})):
        for group, texts in docs.items():
            for i, t in enumerate(texts):
                p = root / f"20news-bydate-{split}" / group / str(50 + i * 7)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(t.encode("latin-1"))


def test_newsgroups_bydate_folder_and_tarball(tmp_path):
    root = tmp_path / "src"
    _bydate(root)
    tarball = tmp_path / "20news-bydate.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        for sub in root.iterdir():
            t.add(sub, arcname=sub.name)
    for path in (root, tarball):
        c = read_any(path, ("bydate",))
        assert c.kind == "text" and c.class_names == ["alt.atheism", "sci.space"]
        assert c.train.x == ["God?", "no", "rockets \xe9"] and c.train.y.tolist() == [0, 0, 1]
        assert c.test.x == ["maybe", "moon"]


def test_wrong_layout_names_what_it_found(tmp_path):
    root = tmp_path / "src"
    _bydate(root)
    with pytest.raises(UserError, match="holds bydate data; expected one of: leaf"):
        read_any(root, ("leaf",))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match="neither a folder nor a tar archive"):
        Tree(tmp_path / "notes.txt")


SHARED = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.skipif(not (SHARED / "femnist-leaf-niid05.tar.gz").is_file(), reason="shared data copies absent")
def test_real_femnist_leaf_subset_from_its_tarball():
    c = read_any(SHARED / "femnist-leaf-niid05.tar.gz", ("leaf",))
    assert (len(c.train), len(c.test), c.num_classes) == (14697, 4182, 62)
    assert len(np.unique(c.train.group)) == 110 and len(np.unique(c.test.group)) == 198


# -- unreadable images, and test splits lacking classes (bring-your-own image folders) ----------
def _folder(root, classes=("cat", "dog"), test_classes=None, n=12):
    for split, k in (("train", n), ("test", 3)):
        for ci, cls in enumerate(classes if split == "train" else (test_classes or classes)):
            for i in range(k):
                _png(root / split / cls / f"{i}.png", 10 + 100 * ci)
    return root


def _break(root, truncated="cat", garbage="dog"):
    """One truncated PNG and one file that is not an image at all."""
    good = (root / "train" / truncated / "0.png").read_bytes()
    (root / "train" / truncated / "cut.png").write_bytes(good[:len(good) // 2])
    (root / "train" / garbage / "notes.png").write_bytes(b"not an image at all")


@pytest.mark.parametrize("bad", ["train/dog/notes.png", "train/cat/cut.png"])
def test_an_unreadable_image_is_named_or_skipped(tmp_path, bad):
    root = _folder(tmp_path / "imgs")
    _break(root)
    (root / ("train/cat/cut.png" if bad.endswith("notes.png") else "train/dog/notes.png")).unlink()
    with pytest.raises(UserError, match=f"cannot read image {bad} in .*fix: replace or delete it"):
        read_any(root, ("imagefolder",))
    with pytest.raises(UserError, match="skip_bad_files=true"):
        read_any(root, ("imagefolder",), skip_bad=False)
    c = read_any(root, ("imagefolder",), skip_bad=True)
    assert c.extras["skipped_files"] == [bad]
    assert np.bincount(c.train.y).tolist() == [12, 12] and len(c.train.x) == 24   # labels follow the kept files
    assert c.train.x[c.train.y == 1][:, 0].min() == 110


def _cli(args, tmp_path):
    env = {**os.environ, "ASYNCFL_BENCH_CACHE": str(tmp_path / "cache"), "ASYNCFL_BENCH_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "asyncfl_bench", "run", *args, "--results", str(tmp_path / "r"),
                           "--set", "total_arrivals=4", "--set", "num_clients=4", "--set", "concurrency=2",
                           "--set", "eval_every=2", "--set", "alpha=10"], capture_output=True, text=True, env=env,
                          check=False)


def test_cli_names_an_unreadable_image_or_skips_and_stops_on_missing_test_classes(tmp_path):
    classes = tuple(f"c{i}" for i in range(5))
    root = _folder(tmp_path / "imgs", classes, test_classes=classes[:2], n=10)
    _break(root, "c0", "c1")
    task = ["--task", f"imagefolder:{root}", "--method", "fedbuff", "--preset", "ci"]
    res = _cli(task, tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "cannot read image train/" in res.stderr and "skip_bad_files=true" in res.stderr
    # the test split lacks 3 of the 5 classes: an error naming them and the fix, nothing run
    res = _cli(task + ["--set", "skip_bad_files=true"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    stderr = " ".join(res.stderr.split())
    assert "no samples of 3 of the 5 training classes (c2, c3, c4)" in stderr
    assert "--set allow_missing_test_classes=true" in stderr and not (tmp_path / "r").exists()
    # accepted knowingly: it runs, and every warning is one clean line (no Python source line)
    res = _cli(task + ["--set", "skip_bad_files=true", "--set", "allow_missing_test_classes=true"], tmp_path)
    assert res.returncode == 0, res.stderr
    warned = [line for line in res.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2 and "warnings.warn" not in res.stderr and "UserWarning" not in res.stderr, res.stderr
    assert "skipped 2 unreadable image file(s) (skip_bad_files=true): train/c0/cut.png, train/c1/notes.png" \
        in warned[0]
    assert "no samples of 3 of the 5 training classes (c2, c3, c4)" in warned[1]


def test_every_method_runs_on_an_image_folder_out_of_the_box(tmp_path, monkeypatch):
    """FedEcho needs the held-out proxy share the built-in ci presets have."""
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "cache"))
    task = BringYourOwn(f"imagefolder:{_folder(tmp_path / 'imgs', n=20)}")
    for preset in ("ci", "small"):
        assert resolve(task, preset, get_method("fedecho"), 0, "cpu", {}, list(methods()))["setup"][
            "proxy_fraction"] == 0.1
    config = resolve(task, "ci", get_method("fedecho"), 0, "cpu",
                     {"total_arrivals": "6", "num_clients": "4", "concurrency": "2", "eval_every": "3", "alpha": "10"},
                     list(methods()))
    summary, ran = execute(config, task, task.load(config["setup"], 0), RunOptions(tmp_path / "r"))
    assert ran and summary["arrivals"] == 6


def test_an_image_folder_run_records_no_text_setup_keys(tmp_path, monkeypatch):
    """Setup keys are part of the run id: an image folder's runs carry only the image path's."""
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "cache"))
    images = BringYourOwn(f"imagefolder:{_folder(tmp_path / 'imgs', n=20)}")
    hub = BringYourOwn(f"hf:{tmp_path / 'some-hub-copy'}")
    for preset in ("ci", "small"):
        setup = resolve(images, preset, get_method("fedbuff"), 0, "cpu", {}, list(methods()))["setup"]
        assert not {"encoder", "max_len", "heads", "layers", "d_model"} & set(setup)
        assert {"encoder", "max_len"} <= set(resolve(hub, preset, get_method("fedbuff"), 0, "cpu", {},
                                                     list(methods()))["setup"])
