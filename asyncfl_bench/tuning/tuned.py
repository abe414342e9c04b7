"""The tuned-values file, ``<results>/tuned/<task>-<preset>.json``, and applying it to runs.

One file per task and preset holds every tuned method's best values together with
what makes them comparable: the budget (trials per method, runs per trial), the
objective, the tuning seeds, the validation share and the setup the trials ran on,
and where the studies live. Methods tuned later are merged in only under the same
budget, so a file never mixes budgets.

``run --tuned`` applies a file: each run takes its method's values and the
validation hold-out the trials trained under (so the tuned values are used on the
very data they were chosen on; the test set, untouched by the tune, is what the run
reports), and records the budget under ``tuning`` in its config, so tuned runs have
their own run ids and the report can show the budget.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

from asyncfl_bench.atomic import update_lock
from asyncfl_bench.config.settings import coerce
from asyncfl_bench.errors import UserError
from asyncfl_bench.results.store import write_json

FORMAT = "asyncfl-bench tuned values"
SCHEMA = 1
# what must agree for two tunes' methods to share one file (equal budgets)
BUDGET_KEYS = ("task", "preset", "objective", "direction", "budget", "tuning_seeds", "validation_fraction",
               "setup")
REQUIRED = {"format": str, "schema": int, "task": str, "preset": str, "objective": str, "direction": str,
            "budget": dict, "tuning_seeds": list, "validation_fraction": float, "setup": dict,
            "storage": str, "methods": dict}


def default_path(results: Path, task: str, preset: str) -> Path:
    return Path(results) / "tuned" / f"{task}-{preset}.json"


def read(path: Path) -> dict:
    """Load and check a tuned file; any problem is a UserError naming the fix."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no tuned file {path}; fix: run `asyncfl-bench tune` first (it writes "
                        f"<results>/tuned/<task>-<preset>.json), or pass the file with --tuned FILE")
    try:
        tuned = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"tuned file {path} is unreadable ({e.__class__.__name__}); fix: rerun "
                        f"`asyncfl-bench tune` (its studies resume, so finished trials are not redone)") from None
    if not isinstance(tuned, dict) or tuned.get("format") != FORMAT:
        raise UserError(f"{path} is not an asyncfl-bench tuned file; fix: pass the file `asyncfl-bench tune` wrote")
    for key, kind in REQUIRED.items():
        value = tuned.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = tuned[key] = float(value)
        if not isinstance(value, kind):
            raise UserError(f"tuned file {path}: '{key}' is missing or not a {kind.__name__}; fix: rerun "
                            f"`asyncfl-bench tune` to rewrite it")
    if tuned["schema"] != SCHEMA:
        raise UserError(f"tuned file {path} has schema {tuned['schema']}, this asyncfl-bench reads {SCHEMA}; "
                        f"fix: rerun `asyncfl-bench tune`")
    for method, entry in tuned["methods"].items():
        if not isinstance(entry, dict) or not isinstance(entry.get("params"), dict):
            raise UserError(f"tuned file {path}: method '{method}' has no params; fix: rerun `asyncfl-bench tune`")
    return tuned


def write(path: Path, tuned: dict) -> dict:
    """Write ``tuned``, merged with the methods of an existing file of the same budget;
    an existing file of another budget is left as it is (UserError)."""
    path = Path(path)
    with update_lock(path):   # two tunes finishing together both keep their methods
        merged = copy.deepcopy(tuned)
        if path.exists():
            old = read(path)
            for key in BUDGET_KEYS:
                if old[key] != tuned[key]:
                    raise UserError(f"{path} holds methods tuned with another {key} ({_short(old[key])} vs "
                                    f"{_short(tuned[key])}); one file holds one budget, so it was left as it "
                                    f"is; fix: tune with the same settings, or write elsewhere with --out FILE")
            merged["methods"] = {**old["methods"], **tuned["methods"]}
        merged["methods"] = dict(sorted(merged["methods"].items()))
        write_json(path, merged)
    return merged


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def tuning_record(tuned: dict) -> dict:
    """What a tuned run records in its config (and so its run id): the budget its values came from."""
    return {"objective": tuned["objective"], "trials": tuned["budget"]["trials"],
            "runs_per_trial": tuned["budget"]["runs_per_trial"], "tuning_seeds": tuned["tuning_seeds"],
            "validation_fraction": tuned["validation_fraction"]}


def comparable_setup(setup: dict) -> dict:
    """A trial's setup as a reporting run has it: trials alone evaluate on validation only."""
    return {**setup, "evaluate_on": "test"}


def apply(configs: list[dict], path: Path) -> list[dict]:
    """Each config with its method's tuned values, the trials' validation hold-out and the
    budget record. Refuses a file for another task or preset, a method it lacks, a seed
    that was a tuning seed, and a setup other than the trials' (each with the fix)."""
    tuned = read(path)
    out = []
    for config in configs:
        if (config["task"], config["preset"]) != (tuned["task"], tuned["preset"]):
            raise UserError(f"{path} was tuned on task '{tuned['task']}' preset '{tuned['preset']}', not "
                            f"'{config['task']}' preset '{config['preset']}'; fix: pass that task's file, or "
                            f"tune it: asyncfl-bench tune --task {config['task']} --preset {config['preset']}")
        method = config["method"]
        if method not in tuned["methods"]:
            raise UserError(f"{path} has no tuned values for '{method}' (it has "
                            f"{', '.join(tuned['methods']) or 'none'}); fix: asyncfl-bench tune --task "
                            f"{config['task']} --preset {config['preset']} --method {method} with the same "
                            f"--trials and --seeds, or leave it out of this run")
        if config["seed"] in tuned["tuning_seeds"]:
            raise UserError(f"seed {config['seed']} was a tuning seed of {path} (tuning seeds "
                            f"{tuned['tuning_seeds']}); reporting on it would score the tuned values on the "
                            f"runs they were chosen on; fix: report on other seeds, e.g. --seeds 0-4")
        cfg = copy.deepcopy(config)
        cfg["setup"]["validation_fraction"] = tuned["validation_fraction"]
        if cfg["setup"] != tuned["setup"]:
            key = _first_difference(cfg["setup"], tuned["setup"])
            raise UserError(f"the tuned values in {path} were chosen with setup {key}="
                            f"{_short(_get(tuned['setup'], key))}, but this run has {_short(_get(cfg['setup'], key))}; "
                            f"fix: run with the --set/--trace the tune used, or tune this setup")
        for name, value in tuned["methods"][method]["params"].items():
            if name not in cfg["method_params"]:
                raise UserError(f"{path}: '{method}' has no parameter '{name}' (valid: "
                                f"{', '.join(sorted(cfg['method_params']))}); fix: rerun `asyncfl-bench tune`")
            cfg["method_params"][name] = coerce(f"{method}.{name}", value, cfg["method_params"][name])
        cfg["tuning"] = tuning_record(tuned)
        out.append(cfg)
    return out


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            if va != vb:
                return _first_difference(va, vb, f"{prefix}{key}.")
        elif va != vb:
            return prefix + key
    return prefix.rstrip(".")


def _get(d: dict, path: str):
    for part in path.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def finite_or_none(value: float) -> float | None:
    """JSON has no infinity: a target never reached is written as null."""
    return value if math.isfinite(value) else None
