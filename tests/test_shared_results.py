"""A results folder shared by several processes: a run is computed once, by one process,
whoever else asks for it at the same time; a seed or method named twice runs once."""
import json
import os
import subprocess
import sys
import time

from typer.testing import CliRunner

from asyncfl_bench.cli import app

TINY = ["--set", "total_arrivals=30", "--set", "num_clients=8", "--set", "concurrency=3", "--set", "eval_every=10"]


def _progress_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("digits/fedbuff seed 0:")]


def test_a_second_process_waits_for_a_run_in_progress_and_never_recomputes_it(tmp_path):
    long = ["--set", "total_arrivals=1000", "--set", "num_clients=8", "--set", "concurrency=3",
            "--set", "eval_every=100"]
    cmd = [sys.executable, "-m", "asyncfl_bench", "run", "--method", "fedbuff", "--threads", "1",
           "--results", str(tmp_path), *long]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not list((tmp_path / ".locks").glob("*.lock")) and time.time() < deadline:
        time.sleep(0.05)   # the first process is inside the run
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    out_first = first.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, (out_first, second.stderr)
    assert _progress_lines(out_first[1])[0].endswith(", ran")
    assert "is running in another process; waiting for it to finish" in " ".join(second.stderr.split())
    assert _progress_lines(second.stderr)[0].endswith(", skipped (done)")   # waited, then reused it
    folder, = [p for p in (tmp_path / "digits" / "fedbuff").iterdir() if p.is_dir()]
    assert json.loads((folder / "summary.json").read_text())["arrivals"] == 1000


def test_a_seed_or_method_named_twice_runs_once(tmp_path):
    res = CliRunner().invoke(app, ["run", "--method", "fedbuff,fedbuff", "--seeds", "0,0", "--results",
                                   str(tmp_path), *TINY])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "digits" / "fedbuff").glob("*/summary.json"))) == 1
    assert len(_progress_lines(res.output)) == 1    # one run started


def test_a_crafted_results_folder_cannot_write_outside_out_and_is_refused(tmp_path):
    """A results folder someone sends you: a task name that climbs out of --out, and a folder
    whose config is another run's, are refused with exit 2; nothing is written outside --out."""
    from report_results import make_results

    results = make_results(tmp_path / "r")
    folder = next((results / "digits" / "fedbuff").iterdir())
    for path in (folder / "config.json", folder / "summary.json"):
        data = json.loads(path.read_text())
        data["task"] = "../../escaped"
        path.write_text(json.dumps(data))
    out = tmp_path / "out" / "a" / "b"
    res = CliRunner().invoke(app, ["report", "--results", str(results), "--out", str(out)])
    assert res.exit_code == 2 and "is not a plain name" in res.output, res.output
    assert not list(tmp_path.rglob("escaped*")) and not out.exists()

    results = make_results(tmp_path / "r2")
    folder = next((results / "digits" / "fedasync").iterdir())
    config = json.loads((folder / "config.json").read_text())
    config["seed"] = 99                      # the config is now another run's than its folder's name
    (folder / "config.json").write_text(json.dumps(config))
    res = CliRunner().invoke(app, ["report", "--results", str(results)])
    assert res.exit_code == 2 and "not this folder's" in " ".join(res.output.split()), res.output


def test_run_refuses_to_reuse_a_folder_whose_config_is_another_runs(tmp_path):
    args = ["run", "--method", "fedbuff", "--results", str(tmp_path), *TINY]
    assert CliRunner().invoke(app, args).exit_code == 0
    folder, = [p for p in (tmp_path / "digits" / "fedbuff").iterdir() if p.is_dir()]
    config = json.loads((folder / "config.json").read_text())
    config["setup"]["local"]["lr"] = 0.5
    (folder / "config.json").write_text(json.dumps(config))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "not this folder's" in " ".join(res.output.split()), res.output



# -- shared files: read-modify-write under a lock, atomic writes, one tune per study ---------

def _tuned_content(method: str) -> dict:
    from asyncfl_bench.tuning import tuned
    return {"format": tuned.FORMAT, "schema": tuned.SCHEMA, "task": "digits", "preset": "ci",
            "objective": "final_accuracy", "direction": "maximize", "budget": {"trials": 1},
            "tuning_seeds": [1000], "validation_fraction": 0.2, "setup": {}, "storage": "x.db",
            "methods": {method: {"params": {"server_lr": 1.0}}}}


def _write_tuned(args):
    from asyncfl_bench.tuning import tuned
    path, method, start = args
    while time.time() < start:   # every process writes at the same moment
        time.sleep(0.001)
    tuned.write(path, _tuned_content(method))


def _remember(args):
    from asyncfl_bench.tasks import byo
    cache_dir, name, start = args
    os.environ["ASYNCFL_BENCH_CACHE"] = cache_dir
    while time.time() < start:
        time.sleep(0.001)
    for i in range(20):   # many read-modify-writes each, interleaved with the other processes'
        byo.remember(f"{name}{i:02d}", f"imagefolder:/data/{name}{i:02d}")


def _together(target, args: list) -> None:
    import multiprocessing
    with multiprocessing.get_context("spawn").Pool(len(args)) as pool:
        pool.map(target, args)


def test_tunes_finishing_together_keep_every_method_in_the_tuned_file(tmp_path):
    path = tmp_path / "tuned" / "digits-ci.json"
    methods = ["fedbuff", "fedasync", "ca2fl", "fedecho", "fedgen", "dc-asgd"]
    _together(_write_tuned, [(path, m, time.time() + 3) for m in methods])
    assert sorted(json.loads(path.read_text())["methods"]) == sorted(methods)
    assert not [p.name for p in path.parent.iterdir() if ".tmp" in p.name]   # no temp file left


def test_byo_tasks_registered_together_are_all_remembered(tmp_path):
    from asyncfl_bench.tasks import byo
    prefixes = [f"imagefolder-set{i}-{i:06x}" for i in range(6)]
    _together(_remember, [(str(tmp_path), n, time.time() + 3) for n in prefixes])
    names = [f"{n}{i:02d}" for n in prefixes for i in range(20)]
    registry = json.loads((tmp_path / "byo-tasks.json").read_text())
    assert registry == {n: f"imagefolder:/data/{n}" for n in names}
    os.environ["ASYNCFL_BENCH_CACHE"], old = str(tmp_path), os.environ.get("ASYNCFL_BENCH_CACHE")
    try:
        assert byo.spec_of(names[0]) == f"imagefolder:/data/{names[0]}"
    finally:
        os.environ.pop("ASYNCFL_BENCH_CACHE") if old is None else os.environ.update(ASYNCFL_BENCH_CACHE=old)


def test_written_files_take_the_users_umask_and_leave_no_temp_file(tmp_path):
    from asyncfl_bench.atomic import atomic_write
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "shared.json", b"{}")
        os.umask(0o077)
        atomic_write(tmp_path / "private.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.json", "shared.json"]


def _hold_study(path, ready, release):
    from asyncfl_bench.atomic import held_alone
    with held_alone(path, "the study database", "wait"):
        ready.set()
        release.wait(60)


def test_a_second_tune_on_a_study_in_use_exits_2_naming_the_holder(tmp_path):
    import multiprocessing
    from asyncfl_bench.tuning.study import storage_path
    db = storage_path(tmp_path, "digits", "ci")
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_study, args=(db, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        res = CliRunner().invoke(app, ["tune", "--method", "fedbuff", "--trials", "1", "--results",
                                       str(tmp_path), *TINY])
    finally:
        release.set()
        holder.join(60)
    text = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert f"is in use by process {holder.pid} on " in text and "wait for that tune to finish" in text
    assert not (tmp_path / "digits").exists()   # no trial ran
    assert not (tmp_path / "tuned" / "trials").exists() or not any((tmp_path / "tuned" / "trials").rglob("summary.json"))


def _save_corpus(args):
    import numpy as np
    from asyncfl_bench.data import cache
    from asyncfl_bench.data.corpus import Corpus, Split
    cache_dir, value, start = args
    os.environ["ASYNCFL_BENCH_CACHE"] = cache_dir
    x = np.full((6, 2, 2, 1), value, dtype=np.uint8)
    corpus = Corpus("image", Split(x, np.arange(6) % 2), Split(x[:2], np.arange(2)), ["a", "b"], "test")
    while time.time() < start:
        time.sleep(0.001)
    cache.save("shared-set", corpus, f"source-{value}")


def test_concurrent_cache_saves_take_turns_and_leave_one_whole_copy(tmp_path):
    from asyncfl_bench.data import cache
    _together(_save_corpus, [(str(tmp_path), v, time.time() + 4) for v in (1, 2, 3)])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["shared-set"]
    os.environ["ASYNCFL_BENCH_CACHE"], old = str(tmp_path), os.environ.get("ASYNCFL_BENCH_CACHE")
    try:
        meta, corpus = cache.cached_meta("shared-set"), cache.load("shared-set")
    finally:
        os.environ.pop("ASYNCFL_BENCH_CACHE") if old is None else os.environ.update(ASYNCFL_BENCH_CACHE=old)
    value = int(meta["source_id"].removeprefix("source-"))
    assert (corpus.train.x == value).all() and (corpus.test.x == value).all()   # one save's files only
