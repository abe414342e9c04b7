"""Every third-party package the product imports is declared in pyproject.toml (core or
an extra), read from the source: an undeclared import works here, where it came in with
another package, and breaks on a machine where it did not."""
from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("asyncfl_bench", "methods", "tasks")


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()


def declared() -> dict[str, str]:
    """Distribution name → where it is declared ("core" or the extra's name)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {_name(r): "core" for r in project["dependencies"]}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        for r in reqs:
            out.setdefault(_name(r), extra)
    return out


def imported_modules() -> dict[str, str]:
    """Top-level module → one file importing it, over the product's source (lazy imports too)."""
    out = {}
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    out.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return out


def test_every_imported_package_is_declared():
    providers = importlib.metadata.packages_distributions()
    decl = declared()
    missing = []
    for module, where in sorted(imported_modules().items()):
        if module in sys.stdlib_module_names or module in ("asyncfl_bench", "__future__"):
            continue
        # an optional extra not installed here (ray, tensorboard) is known by its own name
        dists = {_name(d) for d in providers.get(module, [])} or {_name(module)}
        if not dists & decl.keys():
            missing.append(f"{module} (imported in {where}) comes from {', '.join(sorted(dists))}, not declared")
    assert missing == []


def test_the_checker_sees_an_undeclared_import():
    """The rule is not vacuous: packages the product imports map to declared distributions
    (scikit-learn under ``sklearn``, Pillow under ``PIL``), and a dependency that arrives
    only through another (``dill``, with ``datasets``) is not among the declared."""
    providers, decl = importlib.metadata.packages_distributions(), declared()
    assert {_name(d) for d in providers["sklearn"]} <= decl.keys()
    assert {_name(d) for d in providers["PIL"]} <= decl.keys()
    assert "dill" in providers and not {_name(d) for d in providers["dill"]} & decl.keys()
