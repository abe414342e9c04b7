"""Bring your own data, no code: ``--task imagefolder:<path>`` and ``--task hf:<id or path>``.

* ``imagefolder:<path>``: ``{train,test}/<class>/*.jpg|png`` or ``<class>/*.jpg|png`` (a
  fixed 20% stratified test hold-out), folder or tarball; folder names are the classes;
  images resized to ``image_size`` (default 32). An unreadable image stops the run with
  its name, unless ``--set skip_bad_files=true`` leaves such files out (a warning counts them).
* ``hf:<path>``: a ``save_to_disk`` folder or files ``datasets.load_dataset`` reads
  (csv, json, parquet, image folders); ``hf:<hub id>`` after ``asyncfl-bench data prepare
  hf:<hub id>``. Label and input columns are found by name or type, or set with
  ``--set label_column=...`` / ``--set input_column=...``. Image data gets the image
  models; text data gets the text classifier.

Local copies are parsed once into the cache and re-read when they change. A test split
lacking some of the training classes gets a warning naming them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
import warnings
from pathlib import Path

from filelock import Timeout

from asyncfl_bench.atomic import atomic_write, update_lock
from asyncfl_bench.data import cache
from asyncfl_bench.data.corpus import Corpus
from asyncfl_bench.errors import UserError
from asyncfl_bench.contract.task import TaskFamily
from asyncfl_bench.tasks.image import IMAGE_DEFAULTS, image_model_builder, image_task_data
from asyncfl_bench.tasks.newsgroups import TEXT_DEFAULTS, text_model_builder, text_task_data
from asyncfl_bench.tasks.presets import CI_FEDBUFF, CI_LOCAL, FEDREVIVE_CI_CUT

# keys only the text path reads (the encoder and the transformer's shape)
TEXT_ONLY = set(TEXT_DEFAULTS) - set(IMAGE_DEFAULTS) - {"model"}

PREFIXES = {"hf": "hf:<dataset id or local path>", "imagefolder": "imagefolder:<path>"}

_PRESETS = {
    "ci": {"num_clients": 10, "concurrency": 4, "total_arrivals": 100, "eval_every": 20,
           "partition": "dirichlet", "alpha": 0.5, "model": "cnn", "target_accuracy": 0.5,
           "proxy_fraction": 0.1,   # the server's unlabeled proxy set (FedEcho), as the built-in tasks hold out
           "max_len": 64, "d_model": 64, "layers": 1, "heads": 2,
           "local": dict(CI_LOCAL),
           # FedRevive at the ci cut, with its run-relative gates and s_max (tasks/presets.py)
           "methods": {**copy.deepcopy(CI_FEDBUFF), "fedrevive": dict(FEDREVIVE_CI_CUT)}},
    "small": {"num_clients": 100, "concurrency": 20, "total_arrivals": 2000, "eval_every": 50,
              "partition": "dirichlet", "alpha": 0.5, "model": "cnn", "target_accuracy": 0.7,
              "proxy_fraction": 0.1,
              "local": {"optimizer": "adam", "lr": 1e-3, "batch_size": 32, "iterations": 25},
              "methods": {"fedbuff": {"buffer_size": 10, "server_lr": 1.0, "server_momentum": 0.0}}},
}


def cache_key(kind: str, spec: str, extra: str = "") -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(spec.rstrip("/")).name or spec)[:40]
    return f"{kind}-{slug}-{hashlib.sha256((spec + '|' + extra).encode()).hexdigest()[:8]}"


NAME_RE = re.compile(r"^(hf|imagefolder)-[A-Za-z0-9._-]*-[0-9a-f]{8}$")


def _names_file() -> Path:
    return cache.cache_root() / "byo-tasks.json"


def remember(name: str, spec: str) -> None:
    """Record name → spec, so a worker process given only a config's task name (a
    results-folder-safe slug) can rebuild the task. Read-modify-written under the
    registry's lock: two processes registering together both keep their entry."""
    path = _names_file()
    try:
        with update_lock(path, timeout=60):
            names = json.loads(path.read_text()) if path.is_file() else {}
            if names.get(name) != spec:
                atomic_write(path, json.dumps({**names, name: spec}, indent=1).encode())
    except (OSError, ValueError, Timeout):
        pass   # only workers in other processes need it; they report the task as unknown


def spec_of(name: str) -> str | None:
    try:
        return json.loads(_names_file().read_text()).get(name)
    except (OSError, ValueError):
        return None


class BringYourOwn(TaskFamily):
    """One instance per ``--task`` string; its data decides image or text models."""

    description = "your data: " + ", ".join(PREFIXES.values())
    presets = _PRESETS
    usage = {"hf": (PREFIXES["hf"], "your data, no code: a Hugging Face dataset (hub id after data prepare, "
                                    "or local)"),
             "imagefolder": (PREFIXES["imagefolder"], "your data, no code: {train,test}/<class>/*.jpg|png, "
                                                      "folder names are the classes")}

    @classmethod
    def from_results_name(cls, name: str) -> "BringYourOwn | None":
        spec = spec_of(name) if NAME_RE.match(name) else None
        return None if spec is None else cls(spec)

    def prepare(self) -> tuple[str, Corpus]:
        if self.kind == "hf":
            folder, corpus = prepare_hf(self.spec)
            return str(folder), corpus
        return self.spec, self.corpus({**self.setup_defaults})

    def __init__(self, spec: str):
        kind, _, rest = spec.partition(":")
        if kind not in PREFIXES or not rest:
            raise UserError(f"task '{spec}': expected {' or '.join(PREFIXES.values())}")
        if kind == "imagefolder" or Path(rest).expanduser().exists():   # a local path: name it absolutely
            rest = str(Path(rest).expanduser().resolve())
            spec = f"{kind}:{rest}"
        self.kind, self.spec = kind, rest
        self.name = cache_key(kind, rest)   # a results-folder-safe name, unique per source
        remember(self.name, spec)
        # a hub data set may hold images or text; an image folder holds images only, so its
        # runs carry no text keys (they are part of the run id)
        text_keys = TEXT_DEFAULTS if kind == "hf" else {}
        self.presets = {name: {k: v for k, v in preset.items() if kind == "hf" or k not in TEXT_ONLY}
                        for name, preset in _PRESETS.items()}
        self.setup_defaults = {**IMAGE_DEFAULTS, **text_keys, "model": "cnn", "image_size": 32,
                               "source": f"{kind}:{rest}", "label_column": "", "input_column": "",
                               # imagefolder: leave unreadable image files out (with a warning that
                               # counts them) instead of stopping at the first one
                               "skip_bad_files": False,
                               # a test split lacking training classes is an error unless accepted
                               # knowingly: its accuracy covers the other classes only
                               "allow_missing_test_classes": False}
        self._corpus: tuple[tuple, Corpus] | None = None

    def corpus(self, setup: dict) -> Corpus:
        key = (setup["image_size"], setup["label_column"], setup["input_column"], setup["skip_bad_files"])
        if self._corpus is None or self._corpus[0] != key:
            self._corpus = (key, self._read(setup))
        return self._corpus[1]

    def _read(self, setup: dict) -> Corpus:
        from asyncfl_bench.data.store import load_local
        size, skip = setup["image_size"] or None, bool(setup["skip_bad_files"])
        if self.kind == "imagefolder":
            path = Path(self.spec).expanduser()
            if not path.exists():
                raise UserError(f"imagefolder:{self.spec}: no such folder or archive")
            # skipping reads a different corpus: its own cache entry (the key of the default is unchanged)
            key = cache_key("imagefolder", str(path.resolve()), str(size) + ("|skip_bad" if skip else ""))
            return load_local(key, path, ("imagefolder",), size, skip_bad=skip)
        if skip:
            raise UserError("--set skip_bad_files=true applies to imagefolder: tasks; an hf: data set's files "
                            "are decoded by the datasets library; fix: drop the setting, or remove the bad "
                            "rows from the data set")
        from asyncfl_bench.data.huggingface import corpus_from_hf, open_local_or_hub
        prepared = cache.load(cache_key("hf", self.spec, f"{size}|{setup['label_column']}|{setup['input_column']}"))
        if prepared is not None:
            return prepared
        dd = open_local_or_hub(self.spec, allow_download=False)
        return corpus_from_hf(dd, setup["label_column"], setup["input_column"], size or 32, f"hf:{self.spec}")

    def load(self, setup, seed, data_dir=None):
        corpus = self.corpus(setup)
        skipped = corpus.extras.get("skipped_files") or []
        if skipped:
            warnings.warn(f"{self.kind}:{self.spec}: skipped {len(skipped)} unreadable image file(s) "
                          f"(skip_bad_files=true): {', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}",
                          stacklevel=2)
        if corpus.kind == "text":
            data = text_task_data(corpus, setup, seed, self.name)
        else:
            data = image_task_data(corpus, setup, seed)
        check_test_classes(data, f"{self.kind}:{self.spec}", setup["allow_missing_test_classes"])
        return data

    def model_builder(self, setup, data):
        if data.extras.input_kind == "tokens":
            setup = {**setup, "model": "transformer" if setup["model"] == "cnn" else setup["model"]}
            return text_model_builder(setup, data, self.name)
        return image_model_builder(setup, data, self.name)


def check_test_classes(data, source: str, allow_missing: bool) -> None:
    """A test split without some of the training classes measures accuracy on the others
    only, which is not comparable with that of other data: an error naming them, or, when
    accepted knowingly (``allow_missing_test_classes=true``), a warning."""
    if data.y_test is None:
        return
    trained = set(data.y_train.unique().tolist())
    missing = sorted(trained - set(data.y_test.unique().tolist()))
    if not missing:
        return
    names = [data.class_names[c] if c < len(data.class_names) else str(c) for c in missing]
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    what = f"{source}: the test split has no samples of {len(missing)} of the {len(trained)} training classes ({shown})"
    if not allow_missing:
        raise UserError(f"{what}, so its accuracy would cover the other classes only; fix: add test samples of "
                        "those classes, or accept it knowingly with --set allow_missing_test_classes=true")
    warnings.warn(f"{what}; its accuracy covers the other classes only and is not comparable with runs on "
                  "other data (allow_missing_test_classes=true)", stacklevel=3)


def prepare_hf(spec: str, setup: dict | None = None) -> tuple[Path, Corpus]:
    """``data prepare hf:<id>``: download (or read) and store in the cache."""
    from asyncfl_bench.data.huggingface import corpus_from_hf, open_local_or_hub
    s = {"image_size": 32, "label_column": "", "input_column": "", **(setup or {})}
    dd = open_local_or_hub(spec, allow_download=True)
    corpus = corpus_from_hf(dd, s["label_column"], s["input_column"], s["image_size"], f"hf:{spec}")
    key = cache_key("hf", spec, f"{s['image_size']}|{s['label_column']}|{s['input_column']}")
    return cache.save(key, corpus, f"hf:{spec}"), corpus
