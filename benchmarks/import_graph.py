"""The import graph of asyncfl-bench, read from the source with ``ast`` (nothing is imported).

    python benchmarks/import_graph.py            # package-level edges, cycles, forbidden edges
    python benchmarks/import_graph.py --modules  # every module-level edge

Nodes are modules of the installed package ``asyncfl_bench``: the engine
(``asyncfl_bench/``) and the plug-in folders ``methods/`` and ``tasks/``, which
install as ``asyncfl_bench.methods`` and ``asyncfl_bench.tasks``. Every import counts,
at the top of a module or inside a function, so a late import cannot hide a cycle.
The rules the test suite enforces (``tests/test_architecture.py``):

* no cycle among modules;
* the engine never imports ``methods/`` or ``tasks/`` (it finds them through entry points);
* methods and tasks never import each other, nor the CLI, the simulation or the report.
"""
from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "asyncfl_bench"
FOLDERS = {"asyncfl_bench": PACKAGE, "methods": f"{PACKAGE}.methods", "tasks": f"{PACKAGE}.tasks"}
PLUGINS = (f"{PACKAGE}.methods", f"{PACKAGE}.tasks")
# engine subpackages a plug-in must not reach into: they drive plug-ins, not serve them
DRIVERS = (f"{PACKAGE}.cli", f"{PACKAGE}.simulation", f"{PACKAGE}.results.report", f"{PACKAGE}.results.gate")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    found = {}
    for folder, dotted in FOLDERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([dotted, *parts])] = path
    return found


def _target(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def edges(found: dict[str, Path] | None = None) -> dict[str, set[str]]:
    """module -> the package modules it imports (resolved to the deepest existing module)."""
    found = found or modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in found.items():
        graph[module]
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _target(node, module, path.name == "__init__.py")
                # `from pkg import sub` imports the submodule sub when there is one
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in found else base for a in node.names]
            for name in names:
                while name and name not in found:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def _is_under(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-loops."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def forbidden(graph: dict[str, set[str]]) -> list[tuple[str, str, str]]:
    """(importer, imported, rule) for every edge the layering forbids."""
    bad = []
    for a, targets in graph.items():
        for b in sorted(targets):
            if not _is_under(a, PLUGINS) and _is_under(b, PLUGINS):
                bad.append((a, b, "the engine imports a plug-in folder"))
            elif _is_under(a, (f"{PACKAGE}.methods",)) and _is_under(b, (f"{PACKAGE}.tasks",)):
                bad.append((a, b, "a method imports a task"))
            elif _is_under(a, (f"{PACKAGE}.tasks",)) and _is_under(b, (f"{PACKAGE}.methods",)):
                bad.append((a, b, "a task imports a method"))
            elif _is_under(a, PLUGINS) and _is_under(b, DRIVERS):
                bad.append((a, b, "a plug-in imports what drives it"))
    return bad


def package_of(module: str) -> str:
    """The subpackage a module belongs to, for the summary graph."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def main(argv: list[str]) -> int:
    graph = edges()
    if "--modules" in argv:
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f"{a} -> {b}")
    else:
        packages: dict[str, set[str]] = defaultdict(set)
        for a, targets in graph.items():
            for b in targets:
                if package_of(a) != package_of(b):
                    packages[package_of(a)].add(package_of(b))
        for a in sorted(packages):
            print(f"{a:<32} -> {', '.join(sorted(packages[a]))}")
    found_cycles, bad = cycles(graph), forbidden(graph)
    print(f"\n{len(graph)} modules, {sum(map(len, graph.values()))} import edges, "
          f"{len(found_cycles)} cycles, {len(bad)} forbidden edges")
    for c in found_cycles:
        print("cycle:", " <-> ".join(c))
    for a, b, why in bad:
        print(f"forbidden: {a} -> {b} ({why})")
    return 1 if found_cycles or bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
