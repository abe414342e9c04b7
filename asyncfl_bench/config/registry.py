"""Find methods and tasks through entry points, so third parties add their own.

A package registers a method with, in its pyproject.toml::

    [project.entry-points."asyncfl_bench.methods"]
    my-method = "my_pkg.my_module:MyMethod"
"""
from __future__ import annotations

from functools import lru_cache
from importlib.metadata import entry_points

from asyncfl_bench.errors import UserError


@lru_cache(maxsize=None)
def _load(group: str) -> dict[str, type]:
    found = {}
    for ep in entry_points(group=group):
        found[ep.name] = ep.load()
    if not found:
        raise UserError(f"no entry points in group '{group}': the package is not installed; "
                        f"fix: pip install -e . in the project folder")
    return dict(sorted(found.items()))


def methods() -> dict[str, type]:
    return _load("asyncfl_bench.methods")


def tasks() -> dict[str, type]:
    return _load("asyncfl_bench.tasks")


def get_method(name: str) -> type:
    table = methods()
    if name not in table:
        raise UserError(f"unknown method '{name}'; valid: {', '.join(table)}")
    return table[name]


def task_families() -> dict[str, type]:
    """Prefix -> TaskFamily class, for tasks named ``PREFIX:ARGUMENT``."""
    return _load("asyncfl_bench.task_families")


def get_task(name: str):
    kind, colon, rest = name.partition(":")
    families = task_families()
    if colon and kind in families:   # bring your own data
        return families[kind](name)
    table = tasks()
    if name not in table:   # a family task's results-folder name
        for family in dict.fromkeys(families.values()):
            found = family.from_results_name(name)
            if found is not None:
                return found
    if name not in table:
        raise UserError(f"unknown task '{name}'; valid: {', '.join(table)}")
    return table[name]()


def method_names(spec: str) -> list[str]:
    """``all`` or a comma list, validated against the registry."""
    names = list(methods()) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UserError("no method given; use --method NAME[,NAME...] or --method all")
    for n in names:
        get_method(n)
    return names
