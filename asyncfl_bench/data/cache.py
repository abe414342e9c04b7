"""Prepared copies of data sets, stored as Arrow tables with Hugging Face ``datasets``
(memory-mapped on load) under one cache folder.

The folder is ``$ASYNCFL_BENCH_CACHE``, else ``$XDG_CACHE_HOME/asyncfl-bench``, else
``~/.cache/asyncfl-bench``. Each data set has ``<name>/{train,test}/`` (``save_to_disk``)
and ``meta.json`` (kind, class names, image shape, the source it came from).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from asyncfl_bench.atomic import atomic_write, lock_for, swap_folder
from asyncfl_bench.data.corpus import Corpus, Split
from asyncfl_bench.data.imports import import_datasets
from asyncfl_bench.errors import UserError


def cache_root() -> Path:
    if os.environ.get("ASYNCFL_BENCH_CACHE"):
        return Path(os.environ["ASYNCFL_BENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "asyncfl-bench"


def fingerprint(path: Path) -> str:
    """Identity of a local copy: its resolved path, size and modification time."""
    st = Path(path).stat()
    return f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}"


def cached_meta(name: str) -> dict | None:
    meta = cache_root() / name / "meta.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return None


def _table(split: Split, kind: str):
    import pyarrow as pa

    cols = {"y": pa.array(split.y, type=pa.int64())}
    if kind == "image":
        flat = np.ascontiguousarray(split.x).reshape(len(split.y), -1)
        cols["x"] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.uint8()), flat.shape[1])
    else:
        cols["x"] = pa.array(list(split.x), type=pa.large_string())
    if split.group is not None:
        cols["group"] = pa.array(split.group, type=pa.int64())
    return pa.table(cols)


def save(name: str, corpus: Corpus, source_id: str) -> Path:
    """Write ``corpus`` into the cache: built in a folder of its own, then swapped in by
    rename under the data set's lock (concurrent saves take turns and leave no temp
    folders; a reader never sees a half-written or half-deleted copy)."""
    datasets = import_datasets()
    if hasattr(datasets, "disable_progress_bars"):   # one line per prepared data set is enough
        datasets.disable_progress_bars()
    folder = cache_root() / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    with lock_for(folder):
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}.tmp-"))
        try:
            for split in ("train", "test"):
                datasets.Dataset(_table(getattr(corpus, split), corpus.kind)).save_to_disk(str(tmp / split))
            meta = {"kind": corpus.kind, "class_names": corpus.class_names, "source": corpus.source,
                    "source_id": source_id,
                    "shape": list(np.shape(corpus.train.x)[1:]) if corpus.kind == "image" else None,
                    "sizes": {"train": len(corpus.train), "test": len(corpus.test)}, "extras": corpus.extras,
                    "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
            atomic_write(tmp / "meta.json", json.dumps(meta, indent=1).encode())
            swap_folder(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def _after_save(name: str) -> dict | None:
    """The meta of ``name``, waiting for a save in progress (its lock file exists only
    once some process saved or is saving it) when none is there yet."""
    meta = cached_meta(name)
    lock = lock_for(cache_root() / name)
    if meta is None and Path(lock.lock_file).exists():
        try:
            with lock.acquire(timeout=600):
                meta = cached_meta(name)
        except OSError:   # a read-only cache: nobody can be saving into it
            pass
    return meta


def load(name: str) -> Corpus | None:
    meta = _after_save(name)
    if meta is None:
        return None
    datasets = import_datasets()
    folder = cache_root() / name
    splits = {}
    try:
        for split in ("train", "test"):
            table = datasets.load_from_disk(str(folder / split)).data.table
            y = table.column("y").to_numpy()
            xcol = table.column("x").combine_chunks()
            if meta["kind"] == "image":
                x = xcol.values.to_numpy(zero_copy_only=False).reshape(len(y), *meta["shape"])
            else:
                x = xcol.to_pylist()
            group = table.column("group").to_numpy() if "group" in table.column_names else None
            splits[split] = Split(x, y.astype(np.int64), None if group is None else group.astype(np.int64))
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"the cached copy of {name} in {folder} is unreadable ({e}); "
                        f"fix: asyncfl-bench data prepare {name} again") from None
    return Corpus(meta["kind"], splits["train"], splits["test"], meta["class_names"], meta["source"],
                  meta.get("extras") or {})


def disk_size(name: str) -> int:
    folder = cache_root() / name
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
