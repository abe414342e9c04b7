"""Readers for data sets in their official on-disk layouts.

Every reader takes a :class:`Tree` (a folder or a tar archive, read the same way,
so a downloaded tarball needs no unpacking) and returns a :class:`Corpus`:

* image folder ``{train,test}/<class>/*.{jpg,png,...}`` (CIFAR as JPEGs, your own images);
* CIFAR-10/100 binary version (``data_batch_N.bin`` / ``train.bin``), read with numpy;
* CIFAR-10/100 python version, read only after its official MD5 checksums match, and
  then with an unpickler that can build nothing but numpy arrays and plain containers;
* LEAF JSON (``users``, ``num_samples``, ``user_data``) for FEMNIST, writers kept;
* 20 Newsgroups "bydate" (``20news-bydate-{train,test}/<group>/<id>``).
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import tarfile
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from asyncfl_bench.data.corpus import Corpus, Split, holdout
from asyncfl_bench.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "valid": "test", "validation": "test"}

# Official checksums (https://www.cs.toronto.edu/~kriz/cifar.html, as torchvision records them).
CIFAR_PY_MD5 = {
    "cifar-10-batches-py": {"data_batch_1": "c99cafc152244af753f735de768cd75f",
                            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
                            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
                            "data_batch_4": "634d18415352ddfa80567beed471001a",
                            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
                            "test_batch": "40351d587109b95175f43aff81a1287e",
                            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888"},
    "cifar-100-python": {"train": "16019d7e3df5f24257cddd939b257f8d",
                         "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
                         "meta": "7973b15100ade9c7d40fb424638fde48"},
}


class Tree:
    """Regular files of a folder or a tar archive, by relative POSIX path."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.is_dir():
            self._tar = None
            self.files = sorted(p.relative_to(self.path).as_posix() for p in self.path.rglob("*") if p.is_file())
        elif self.path.is_file() and tarfile.is_tarfile(self.path):
            self._tar = tarfile.open(self.path, "r:*")
            self._members = {m.name.lstrip("./"): m for m in self._tar.getmembers() if m.isfile()}
            self.files = sorted(self._members)
        else:
            raise UserError(f"{self.path} is neither a folder nor a tar archive; "
                            f"fix: point --data-dir / --from at the data set's folder or its tarball")

    def read(self, rel: str) -> bytes:
        if self._tar is None:
            return (self.path / rel).read_bytes()
        return self._tar.extractfile(self._members[rel]).read()

    def read_many(self, rels: list[str]):
        """(rel, bytes) for each of ``rels``, in archive order (a gzip stream reads only forwards)."""
        if self._tar is None:
            for r in rels:
                yield r, self.read(r)
            return
        wanted = set(rels)
        for m in self._tar:
            name = m.name.lstrip("./")
            if m.isfile() and name in wanted:
                yield name, self._tar.extractfile(m).read()

    def basenames(self) -> dict[str, str]:
        return {PurePosixPath(f).name: f for f in self.files}


# --- image folder -----------------------------------------------------------------

def imagefolder_files(tree: Tree) -> dict[str, dict[str, list[str]]]:
    """split -> class -> files, from paths ending in ``<split>/<class>/<file>`` (or
    ``<class>/<file>`` with no split folders, returned under the key ``all``)."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    flat: dict[str, list[str]] = defaultdict(list)
    for f in tree.files:
        parts = PurePosixPath(f).parts
        if PurePosixPath(f).suffix.lower() not in IMAGE_SUFFIXES or len(parts) < 2:
            continue
        if len(parts) >= 3 and parts[-3].lower() in SPLIT_NAMES:
            found[SPLIT_NAMES[parts[-3].lower()]][parts[-2]].append(f)
        else:
            flat[parts[-2]].append(f)
    if found:
        return {k: dict(v) for k, v in found.items()}
    return {"all": dict(flat)} if flat else {}


def decode_images(tree: Tree, files: list[str], size: int | None,
                  skip_bad: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """(uint8 [N, C, H, W], the files that could not be read); greyscale stays 1
    channel, anything else becomes RGB. An unreadable file is a UserError naming it,
    or, with ``skip_bad``, left out and returned in the list (``None``: skipping is not
    offered to this caller, so the error does not suggest it)."""
    from PIL import Image, UnidentifiedImageError

    out, mode, bad = [], None, []
    data = dict(tree.read_many(files))
    for f in files:
        try:
            with Image.open(io.BytesIO(data[f])) as im:
                m = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                im = im.convert(mode or m)   # decodes the pixels: a truncated file fails here
                if size:
                    im = im.resize((size, size), Image.BILINEAR) if im.size != (size, size) else im
                a = np.asarray(im, dtype=np.uint8)
        # what PIL raises on bytes it cannot decode (UnidentifiedImageError is an OSError)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            if skip_bad:
                bad.append(f)
                continue
            fix = ("replace or delete it, or skip unreadable files with --set skip_bad_files=true"
                   if skip_bad is not None else "replace or delete it (or prepare the data set again)")
            why = "not an image format PIL knows" if isinstance(e, UnidentifiedImageError) else str(e)
            raise UserError(f"cannot read image {f} in {tree.path} ({type(e).__name__}: {why}); fix: {fix}") from None
        mode = mode or m
        out.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    shapes = {a.shape for a in out}
    if len(shapes) > 1:
        raise UserError(f"images in {tree.path} have different sizes {sorted(shapes)[:3]}...; "
                        f"fix: --set image_size=32 (or another side) to resize them")
    return (np.stack(out) if out else np.zeros((0, 1, 1, 1), np.uint8)), bad


def read_imagefolder(tree: Tree, size: int | None = None, test_fraction: float = 0.2,
                     skip_bad: bool | None = None) -> Corpus:
    """Classes are the folder names. With ``skip_bad``, unreadable files are left out
    and listed in the corpus's ``extras["skipped_files"]``."""
    layout = imagefolder_files(tree)
    if not layout:
        raise UserError(f"no images found in {tree.path}; expected {{train,test}}/<class>/*.jpg|png "
                        f"or <class>/*.jpg|png")
    classes = sorted({c for split in layout.values() for c in split})
    index = {c: i for i, c in enumerate(classes)}
    skipped: list[str] = []

    def split_of(by_class):
        files = [f for c in sorted(by_class) for f in sorted(by_class[c])]
        x, bad = decode_images(tree, files, size, skip_bad)
        skipped.extend(bad)
        bad = set(bad)
        y = np.array([index[c] for c in sorted(by_class) for f in sorted(by_class[c]) if f not in bad],
                     dtype=np.int64)
        return Split(x, y)
    if "train" in layout and "test" in layout:
        train, test = split_of(layout["train"]), split_of(layout["test"])
        if len(train) and len(test) and train.x.shape[1:] != test.x.shape[1:]:
            raise UserError(f"train images are {train.x.shape[1:]} but test images {test.x.shape[1:]} in "
                            f"{tree.path}; fix: --set image_size=32 (or another side) to resize them")
    else:  # one pool of images: hold out a fixed, stratified test split
        train, test = holdout(split_of(next(iter(layout.values()))), test_fraction)
    if skipped and (not len(train) or not len(test)):
        raise UserError(f"no readable {'training' if not len(train) else 'test'} images in {tree.path} "
                        f"({len(skipped)} unreadable ones skipped); fix: replace the unreadable files")
    return Corpus("image", train, test, classes, str(tree.path), {"skipped_files": skipped} if skipped else {})


# --- CIFAR binary and python versions ----------------------------------------------

def read_cifar_binary(tree: Tree) -> Corpus:
    names = tree.basenames()
    if "data_batch_1.bin" in names:        # CIFAR-10: <1 label byte><3072 pixel bytes>
        label_bytes, label_at = 1, 0
        train_files = [names[f"data_batch_{i}.bin"] for i in range(1, 6)]
        test_files = [names["test_batch.bin"]]
        meta = names.get("batches.meta.txt")
    else:                                  # CIFAR-100: <coarse label><fine label><3072 bytes>
        label_bytes, label_at = 2, 1
        train_files, test_files = [names["train.bin"]], [names["test.bin"]]
        meta = names.get("fine_label_names.txt")

    def split_of(files):
        raw = np.concatenate([np.frombuffer(tree.read(f), dtype=np.uint8) for f in files])
        rec = raw.reshape(-1, label_bytes + 3072)
        return Split(rec[:, label_bytes:].reshape(-1, 3, 32, 32).copy(), rec[:, label_at].astype(np.int64))
    train, test = split_of(train_files), split_of(test_files)
    n = 10 if label_bytes == 1 else 100
    classes = [s for s in tree.read(meta).decode().split("\n") if s.strip()] if meta else [str(i) for i in range(n)]
    return Corpus("image", train, test, classes, str(tree.path))


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and builtin containers only: anything else in the stream is refused."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise UserError(f"refusing to unpickle {module}.{name}: not part of the official CIFAR files")


def read_cifar_python(tree: Tree) -> Corpus:
    names = tree.basenames()
    folder = "cifar-10-batches-py" if "data_batch_1" in names else "cifar-100-python"
    blobs = {}
    for name, md5 in CIFAR_PY_MD5[folder].items():
        if name not in names:
            raise UserError(f"{tree.path} lacks {folder}/{name}; fix: use the complete official archive")
        blob = tree.read(names[name])
        if hashlib.md5(blob).hexdigest() != md5:   # never unpickle a file that is not the official one
            raise UserError(f"{names[name]} in {tree.path} does not match the official checksum; "
                            f"fix: download the archive again, or use the binary version")
        blobs[name] = _ArrayUnpickler(io.BytesIO(blob), encoding="latin1").load()
    if folder == "cifar-10-batches-py":
        parts = [blobs[f"data_batch_{i}"] for i in range(1, 6)]
        train = Split(np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32),
                      np.concatenate([np.asarray(p["labels"]) for p in parts]).astype(np.int64))
        t = blobs["test_batch"]
        test = Split(np.asarray(t["data"]).reshape(-1, 3, 32, 32), np.asarray(t["labels"], dtype=np.int64))
        classes = list(blobs["batches.meta"]["label_names"])
    else:
        train, test = (Split(np.asarray(blobs[s]["data"]).reshape(-1, 3, 32, 32),
                             np.asarray(blobs[s]["fine_labels"], dtype=np.int64)) for s in ("train", "test"))
        classes = list(blobs["meta"]["fine_label_names"])
    return Corpus("image", train, test, classes, str(tree.path))


# --- LEAF JSON (FEMNIST) -----------------------------------------------------------

def read_leaf(tree: Tree) -> Corpus:
    """LEAF's ``{train,test}/*.json``; x in [0, 1] (784 floats) becomes uint8 28×28, and
    each writer keeps one integer id across both splits."""
    writers: dict[str, int] = {}
    splits = {}
    for split in ("train", "test"):
        files = [f for f in tree.files if f.endswith(".json") and PurePosixPath(f).parent.name == split]
        if not files:
            raise UserError(f"no {split}/*.json in {tree.path}; expected LEAF's layout "
                            f"(users, num_samples, user_data)")
        xs, ys, gs = [], [], []
        for _, blob in sorted(tree.read_many(files)):
            doc = json.loads(blob)
            for user in doc["users"]:
                d = doc["user_data"][user]
                gid = writers.setdefault(user, len(writers))
                xs.append(np.asarray(d["x"], dtype=np.float32))
                ys.append(np.asarray(d["y"], dtype=np.int64))
                gs.append(np.full(len(d["y"]), gid, dtype=np.int64))
        x = np.concatenate(xs)
        side = int(round(np.sqrt(x.shape[1])))
        x = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8).reshape(-1, 1, side, side)
        splits[split] = Split(x, np.concatenate(ys), np.concatenate(gs))
    n = int(max(splits["train"].y.max(), splits["test"].y.max())) + 1
    n = 62 if n <= 62 else n
    classes = ([str(d) for d in range(10)] + [chr(c) for c in range(65, 91)] + [chr(c) for c in range(97, 123)]
               if n == 62 else [str(i) for i in range(n)])
    return Corpus("image", splits["train"], splits["test"], classes, str(tree.path),
                  {"writers": list(writers)})


# --- 20 Newsgroups bydate -------------------------------------------------------------

BYDATE = re.compile(r"(?:^|/)20news-bydate-(train|test)/([^/]+)/([^/]+)$")


def read_bydate(tree: Tree) -> Corpus:
    entries = {"train": [], "test": []}
    for f in tree.files:
        m = BYDATE.search(f)
        if m:
            entries[m.group(1)].append((m.group(2), f))
    if not entries["train"] or not entries["test"]:
        raise UserError(f"no 20news-bydate-train/ and 20news-bydate-test/ in {tree.path}; "
                        f"expected the official bydate layout or tarball")
    groups = sorted({g for e in entries.values() for g, _ in e})
    index = {g: i for i, g in enumerate(groups)}
    texts = dict(tree.read_many([f for e in entries.values() for _, f in e]))
    splits = {}
    for split, e in entries.items():
        e = sorted(e, key=lambda gf: (gf[0], _doc_key(gf[1])))
        # the posts are Latin-1 (as scikit-learn reads them)
        splits[split] = Split([texts[f].decode("latin-1") for _, f in e],
                              np.array([index[g] for g, _ in e], dtype=np.int64))
    return Corpus("text", splits["train"], splits["test"], groups, str(tree.path))


def _doc_key(path: str):
    name = PurePosixPath(path).name
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


FORMATS = {"imagefolder": read_imagefolder, "cifar-binary": read_cifar_binary,
           "cifar-python": read_cifar_python, "leaf": read_leaf, "bydate": read_bydate}


def sniff(tree: Tree) -> str | None:
    """Which format a tree holds, from file names alone."""
    names = tree.basenames()
    if "data_batch_1.bin" in names or ("train.bin" in names and "test.bin" in names):
        return "cifar-binary"
    if "data_batch_1" in names or ("meta" in names and "train" in names and "test" in names):
        return "cifar-python"
    if any(BYDATE.search(f) for f in tree.files[:50000]):
        return "bydate"
    if any(f.endswith(".json") and PurePosixPath(f).parent.name in ("train", "test") for f in tree.files):
        return "leaf"
    if imagefolder_files(tree):
        return "imagefolder"
    return None


def read_any(path: Path, expect: tuple[str, ...], image_size: int | None = None,
             skip_bad: bool | None = None) -> Corpus:
    """Read whichever of the ``expect``ed layouts ``path`` holds; ``image_size`` and
    ``skip_bad`` (see ``read_imagefolder``) apply to image folders."""
    tree = Tree(path)
    fmt = sniff(tree)
    if fmt not in expect:
        raise UserError(f"{path} holds {'no known data layout' if fmt is None else fmt + ' data'}; "
                        f"expected one of: {', '.join(expect)}")
    return read_imagefolder(tree, image_size, skip_bad=skip_bad) if fmt == "imagefolder" else FORMATS[fmt](tree)
