"""Where each known data set comes from: the cache, a local copy, or the hub.

Order of lookup in a run: a local copy under ``--data-dir`` (imported into the cache
the first time, re-imported when the copy changes) → the cache → an error naming the
command or flag that fixes it. Only ``asyncfl-bench data prepare`` downloads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from asyncfl_bench.data import cache
from asyncfl_bench.data.corpus import Corpus, Split, holdout
from asyncfl_bench.data.formats import read_any
from asyncfl_bench.data.imports import import_datasets
from asyncfl_bench.errors import UserError


# --- hub downloads (only `data prepare` calls these) --------------------------------

def _hub_split(ds, image_col: str, label_col: str, group_col: str | None = None) -> Split:
    x = np.stack([_image_array(im) for im in ds[image_col]])
    group = None
    if group_col is not None:
        ids = {w: i for i, w in enumerate(dict.fromkeys(ds[group_col]))}
        group = np.array([ids[w] for w in ds[group_col]], dtype=np.int64)
    return Split(x, np.asarray(ds[label_col], dtype=np.int64), group)


def _image_array(im) -> np.ndarray:
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def _load_hub(repo: str):
    datasets = import_datasets()
    try:
        return datasets.load_dataset(repo)
    except Exception as e:  # network, auth, or a renamed repository: all need the user
        raise UserError(f"could not download {repo} from the Hugging Face hub ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:160]}); fix: retry online, or copy the data set here "
                        f"and run asyncfl-bench data prepare TASK --from PATH") from None


def fetch_cifar(repo: str, label_col: str) -> Corpus:
    d = _load_hub(repo)
    names = d["train"].features[label_col].names
    return Corpus("image", _hub_split(d["train"], "img", label_col), _hub_split(d["test"], "img", label_col),
                  list(names), f"hub:{repo}")


def fetch_femnist() -> Corpus:
    repo = "flwrlabs/femnist"
    d = _load_hub(repo)["train"]
    whole = _hub_split(d, "image", "character", "writer_id")
    # the hub copy has one split: LEAF's per-writer 90/10 train/test convention
    train, test = holdout(whole, 0.1)
    return Corpus("image", train, test, list(d.features["character"].names), f"hub:{repo}")


def fetch_newsgroups() -> Corpus:
    from sklearn.datasets import fetch_20newsgroups

    home = cache.cache_root() / "sklearn"
    try:
        parts = {s: fetch_20newsgroups(data_home=str(home), subset=s, shuffle=False) for s in ("train", "test")}
    except Exception as e:
        raise UserError(f"could not download 20 Newsgroups with scikit-learn ({type(e).__name__}); "
                        f"fix: retry online, or run asyncfl-bench data prepare 20newsgroups "
                        f"--from 20news-bydate.tar.gz") from None
    splits = {s: Split(list(p.data), np.asarray(p.target, dtype=np.int64)) for s, p in parts.items()}
    return Corpus("text", splits["train"], splits["test"], list(parts["train"].target_names), "sklearn:20newsgroups")


@dataclass(frozen=True)
class Source:
    name: str
    local_names: tuple[str, ...]     # what to look for under --data-dir
    formats: tuple[str, ...]         # layouts accepted for a local copy
    hub: str                         # where `data prepare` downloads from
    fetch: Callable[[], Corpus]


KNOWN: dict[str, Source] = {s.name: s for s in (
    Source("cifar10", ("cifar10", "cifar10-jpg", "cifar10-jpg.tar", "cifar-10-batches-bin",
                       "cifar-10-binary.tar.gz", "cifar-10-batches-py", "cifar-10-python.tar.gz"),
           ("imagefolder", "cifar-binary", "cifar-python"), "uoft-cs/cifar10",
           lambda: fetch_cifar("uoft-cs/cifar10", "label")),
    Source("cifar100", ("cifar100", "cifar100-jpg", "cifar100-jpg.tar", "cifar-100-binary",
                        "cifar-100-binary.tar.gz", "cifar-100-python", "cifar-100-python.tar.gz"),
           ("imagefolder", "cifar-binary", "cifar-python"), "uoft-cs/cifar100",
           lambda: fetch_cifar("uoft-cs/cifar100", "fine_label")),
    Source("femnist", ("femnist", "femnist-leaf-niid05", "femnist-leaf-niid05.tar.gz", "femnist.tar.gz"),
           ("leaf",), "flwrlabs/femnist", fetch_femnist),
    Source("20newsgroups", ("20newsgroups", "20news-bydate", "20news-bydate.tar.gz", "20news-bydate.tgz"),
           ("bydate",), "scikit-learn fetch_20newsgroups", fetch_newsgroups),
)}


def find_local(src: Source, data_dir: Path | None) -> Path | None:
    if data_dir is None:
        return None
    data_dir = Path(data_dir)
    if data_dir.name in src.local_names and data_dir.exists():
        return data_dir
    for name in src.local_names:
        if (data_dir / name).exists():
            return data_dir / name
    if data_dir.is_dir() and "bydate" in src.formats and (data_dir / "20news-bydate-train").is_dir():
        return data_dir
    return None


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers, asked the way downloads ask it: through
    ``huggingface_hub``'s own session at ``HF_ENDPOINT`` (a mirror) and through
    ``HTTPS_PROXY`` when set, so a machine behind a proxy or a mirror is not wrongly
    told it has no network. Any answer counts, even an error status."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes")
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "ASYNCFL_BENCH_OFFLINE")):
        return False
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session
    except ImportError:
        return False
    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    try:
        get_session().head(endpoint.rstrip("/") + "/api/datasets", timeout=timeout)
        return True
    except Exception:   # requests' or httpx's errors, depending on the huggingface_hub version
        return False


def missing_message(src: Source, data_dir: Path | None) -> str:
    where = f"no copy of {src.name} under --data-dir {data_dir} (looked for {', '.join(src.local_names)}) " \
            f"and none prepared" if data_dir else f"{src.name} is not prepared and no --data-dir was given"
    return (f"{where}; fix: asyncfl-bench data prepare {src.name} (downloads {src.hub}; needs network), "
            f"or --data-dir PATH with a local copy ({', '.join(src.local_names[:3])}, ...)")


def load_local(key: str, path: Path, formats: tuple[str, ...], image_size: int | None = None,
               skip_bad: bool | None = None) -> Corpus:
    """Read a local copy through the cache: parse it once, re-parse only when it changes.
    ``key`` must tell apart the readings ``image_size`` and ``skip_bad`` change."""
    fingerprint = cache.fingerprint(path)
    meta = cache.cached_meta(key)
    if meta is not None and meta.get("source_id") == fingerprint:
        return cache.load(key)
    corpus = read_any(path, formats, image_size, skip_bad)
    try:
        cache.save(key, corpus, fingerprint)
    except OSError:   # a read-only cache costs speed, not correctness
        pass
    return corpus


def load_corpus(name: str, data_dir: Path | None) -> Corpus:
    src = KNOWN[name]
    local = find_local(src, data_dir)
    if local is not None:
        return load_local(name, local, src.formats)
    corpus = cache.load(name)
    if corpus is None:
        raise UserError(missing_message(src, data_dir))
    return corpus


def prepare(name: str, from_path: Path | None = None) -> tuple[Path, Corpus]:
    """Import a local copy into the cache, or download it (the only place that downloads)."""
    if name not in KNOWN:
        raise UserError(f"unknown data set '{name}'; valid: {', '.join(KNOWN)}")
    src = KNOWN[name]
    if from_path is not None:
        path = Path(from_path)
        if not path.exists():
            raise UserError(f"--from {path}: no such file or folder")
        corpus = read_any(path, src.formats)
        return cache.save(name, corpus, cache.fingerprint(path)), corpus
    if not hub_reachable():
        raise UserError(f"no network to download {name} from {src.hub}; fix: copy the data set to this "
                        f"machine and run asyncfl-bench data prepare {name} --from PATH "
                        f"(accepted: {', '.join(src.local_names)})")
    corpus = src.fetch()
    return cache.save(name, corpus, corpus.source), corpus


def status(data_dir: Path | None) -> list[dict]:
    rows = []
    for name, src in KNOWN.items():
        meta = cache.cached_meta(name)
        local = find_local(src, data_dir)
        if meta is not None and (local is None or meta.get("source_id") == cache.fingerprint(local)):
            sizes = meta.get("sizes", {})
            rows.append({"task": name, "found": "prepared", "path": str(cache.cache_root() / name),
                         "samples": f"{sizes.get('train', '?')} / {sizes.get('test', '?')}",
                         "disk": _mb(cache.disk_size(name))})
        elif local is not None:
            size = local.stat().st_size if local.is_file() else sum(
                p.stat().st_size for p in local.rglob("*") if p.is_file())
            rows.append({"task": name, "found": "local copy", "path": str(local),
                         "samples": "read on first use", "disk": _mb(size)})
        else:
            rows.append({"task": name, "found": "missing", "path": "—", "samples": "—", "disk": "—",
                         "fix": f"asyncfl-bench data prepare {name} (online) or --data-dir PATH"})
    return rows


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"
