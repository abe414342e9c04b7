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
def _names(group: str) -> dict:
    """Name -> entry point, without importing anything (so `--method fedbuff` loads
    one method's module, not all of them)."""
    found = {ep.name: ep for ep in entry_points(group=group)}
    if not found:
        raise UserError(f"no entry points in group '{group}': the package is not installed; "
                        f"fix: pip install -e . in the project folder")
    return dict(sorted(found.items()))


@lru_cache(maxsize=None)
def _load_one(group: str, name: str) -> type:
    return _names(group)[name].load()


def _load(group: str) -> dict[str, type]:
    return {name: _load_one(group, name) for name in _names(group)}


def methods() -> dict[str, type]:
    return _load("asyncfl_bench.methods")


def tasks() -> dict[str, type]:
    return _load("asyncfl_bench.tasks")


def get_method(name: str) -> type:
    if name not in _names("asyncfl_bench.methods"):
        raise UserError(f"unknown method '{name}'; valid: {', '.join(_names('asyncfl_bench.methods'))}")
    return _load_one("asyncfl_bench.methods", name)


def get_measurement(name: str):
    """A measurement module (``parse_params``, ``measure``, ``ESTIMATORS``, ``METRICS``) that a
    plug-in registers for the claims that are not run comparisons (e.g. an estimate's error)."""
    group = "asyncfl_bench.measurements"
    if name not in _names(group):
        raise UserError(f"unknown measurement '{name}'; valid: {', '.join(_names(group))}")
    return _load_one(group, name)


def task_families() -> dict[str, type]:
    """Prefix -> TaskFamily class, for tasks named ``PREFIX:ARGUMENT``."""
    return _load("asyncfl_bench.task_families")


def get_task(name: str):
    kind, colon, rest = name.partition(":")
    families = task_families()
    if colon and kind in families:   # bring your own data
        return families[kind](name)
    table = _names("asyncfl_bench.tasks")
    if name not in table:   # a family task's results-folder name
        for family in dict.fromkeys(families.values()):
            found = family.from_results_name(name)
            if found is not None:
                return found
        raise UserError(f"unknown task '{name}'; valid: {', '.join(table)}")
    return _load_one("asyncfl_bench.tasks", name)()


def method_names(spec: str) -> list[str]:
    """``all`` or a comma list, validated against the registry."""
    known = _names("asyncfl_bench.methods")
    names = list(known) if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise UserError("no method given; use --method NAME[,NAME...] or --method all")
    for n in names:
        if n not in known:
            get_method(n)   # raises, naming the valid ones
    return list(dict.fromkeys(names))   # a method named twice runs once
