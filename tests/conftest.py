import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asyncfl_bench.config.settings import resolve
from asyncfl_bench.config.registry import get_method, methods
from asyncfl_bench.tasks.digits import Digits

TINY = {"total_arrivals": "30", "num_clients": "10", "concurrency": "4", "eval_every": "10"}


def tiny_config(method: str, seed: int = 0, **overrides) -> dict:
    """A digits run small enough for a unit test (about a second)."""
    over = {**TINY, **{k.replace("__", "."): str(v) for k, v in overrides.items()}}
    return resolve(Digits(), "ci", get_method(method), seed, "cpu", over, list(methods()))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for the module, restored after it: tiny models run fastest on one
    intra-op thread and do not slow down on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def digits():
    return Digits()


def make_context(build=None, num_clients: int = 4, concurrency: int = 2, num_classes: int = 2, **fields):
    """A ServerContext for unit tests of a method (CPU, seed 0); ``build`` makes the model."""
    import torch

    from asyncfl_bench.contract.method import ServerContext
    from asyncfl_bench.training.flat import Layout

    layout = Layout.of(build()) if build is not None else Layout((), (), ())
    return ServerContext(num_clients=num_clients, concurrency=concurrency, num_classes=num_classes, seed=0,
                         device=torch.device("cpu"), layout=layout, build_model=build or (lambda: None), **fields)


def arrive(method, client: int, delta, staleness: int = 0, base=None) -> None:
    """Deliver to ``method`` client ``client``'s update ``delta`` (a list), trained from
    ``base`` (default: the method's current model) and ``staleness`` versions old."""
    import torch

    from asyncfl_bench.contract.method import ClientUpdate

    base = method.params.clone() if base is None else base
    method.receive(ClientUpdate(client=client, job=0, base_version=method.version, staleness=staleness, base=base,
                                params=base + torch.tensor(delta), num_samples=1, arrival_time=0.0))


# -- tiny text data: a two-topic vocabulary, a WordPiece encoder, the 20NG bydate layout
WORDS = {0: "rocket moon orbit launch nasa".split(), 1: "god faith church bible pray".split()}


@pytest.fixture
def encoder(tmp_path) -> Path:
    """A real WordPiece tokenizer.json + a safetensors embedding table, in a folder."""
    from safetensors.torch import save_file
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]"] + WORDS[0] + WORDS[1])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    folder = tmp_path / "enc"
    folder.mkdir()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]"}))
    save_file({"embeddings.word_embeddings.weight": torch.randn(len(vocab), 8, generator=torch.Generator().manual_seed(0))},
              str(folder / "model.safetensors"))
    return folder


def _docs(n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    return [" ".join(rng.choice(WORDS[int(c)], 6)) for c in labels], labels


def _bydate(root):
    for split, n in (("train", 40), ("test", 10)):
        for i, (text, c) in enumerate(zip(*_docs(n, len(split)))):
            p = root / f"20news-bydate-{split}" / ["sci.space", "soc.religion.christian"][c] / str(i)
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
