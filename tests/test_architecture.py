"""The package's layering, read from the source: no import cycles, and the engine never
reaches into the plug-in folders (``benchmarks/import_graph.py`` prints the graph)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_graph", ROOT / "benchmarks" / "import_graph.py")
graph_mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph_mod)


def test_no_import_cycles():
    assert graph_mod.cycles(graph_mod.edges()) == []


def test_no_forbidden_edges():
    assert graph_mod.forbidden(graph_mod.edges()) == []


def test_no_import_dodges_a_cycle():
    """No ``# noqa: E402`` left: every import is at the top of its module or is deliberately lazy."""
    hits = [str(p.relative_to(ROOT)) for folder in ("asyncfl_bench", "methods", "tasks")
            for p in (ROOT / folder).rglob("*.py") if "noqa: E402" in p.read_text()]
    assert hits == []


def test_the_checker_sees_cycles_and_forbidden_edges(tmp_path):
    """On a made-up tree: a two-module cycle hidden in a function, and an engine → methods edge."""
    (tmp_path / "asyncfl_bench").mkdir()
    (tmp_path / "methods").mkdir()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "asyncfl_bench" / "__init__.py").write_text("")
    (tmp_path / "asyncfl_bench" / "a.py").write_text("from asyncfl_bench import b\n")
    (tmp_path / "asyncfl_bench" / "b.py").write_text("def f():\n    from . import a\n")
    (tmp_path / "asyncfl_bench" / "c.py").write_text("from asyncfl_bench.methods.m import M\n")
    (tmp_path / "methods" / "__init__.py").write_text("")
    (tmp_path / "methods" / "m.py").write_text("from asyncfl_bench.tasks.t import T\n")
    (tmp_path / "tasks" / "t.py").write_text("")
    graph = graph_mod.edges(graph_mod.modules(tmp_path))
    assert graph_mod.cycles(graph) == [["asyncfl_bench.a", "asyncfl_bench.b"]]
    rules = {(a, b): why for a, b, why in graph_mod.forbidden(graph)}
    assert rules == {("asyncfl_bench.c", "asyncfl_bench.methods.m"): "the engine imports a plug-in folder",
                     ("asyncfl_bench.methods.m", "asyncfl_bench.tasks.t"): "a method imports a task"}
