"""Resolved run configurations: plain nested dicts, hashed into run ids.

``resolve`` merges, in order: ``SETUP_DEFAULTS`` → the task's preset →
``--set`` overrides, and the method's paper defaults → the preset's per-method
overrides → ``--set METHOD.PARAM=...``. Every key and type is checked against
what it overrides, so a typo is an error, not a silently ignored setting.
"""
from __future__ import annotations

import copy

from asyncfl_bench.errors import UserError
from asyncfl_bench.config.identity import run_id  # noqa: F401  (re-exported: settings.run_id)
from asyncfl_bench.config.spec import parse_value
from asyncfl_bench.training.local import LOCAL_DEFAULTS

SCHEMA = 1

SETUP_DEFAULTS: dict = {
    "num_clients": 20,
    "concurrency": 5,            # M: jobs in flight at once
    "total_arrivals": 200,       # client updates the run processes (the compute budget)
    "eval_every": 10,            # evaluate every k arrivals
    "eval_batch_size": 1024,
    "partition": "dirichlet",    # iid | dirichlet
    "alpha": 0.5,                # Dirichlet concentration
    "min_samples": 8,            # per client
    "model": "cnn",
    "trace": "fedrevive",        # KIND[:k=v,...], see `asyncfl-bench list`
    "target_accuracy": 0.8,      # for time-to-target
    # share of each client's data held out as the server's unlabeled proxy set, for every
    # method alike (only FedEcho reads it), so `--method all` starts on every preset
    "proxy_fraction": 0.1,
    "validation_fraction": 0.0,  # share of each client's data held out as a labeled validation split
    "evaluate_on": "test",       # test | validation (a tuning trial: the run holds no test set)
    "local": dict(LOCAL_DEFAULTS),
}


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def flat_keys(d: dict, prefix: str = "") -> list[str]:
    keys = []
    for k, v in d.items():
        keys += flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else [prefix + k]
    return keys


def coerce(key: str, text, default):
    """Parse ``text`` into the type of ``default`` or raise a UserError naming the key."""
    value = parse_value(text) if isinstance(text, str) else text
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok, value = True, str(text)
    if not ok:
        raise UserError(f"--set {key}={text}: expected {type(default).__name__}, got {text!r}; "
                        f"fix: give a {type(default).__name__} (default {default!r})")
    return value


def parse_overrides(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set '{item}' is not KEY=VALUE; fix: write e.g. --set local.lr=0.1 "
                            f"or --set fedbuff.buffer_size=5")
        out[key.strip()] = value.strip()
    return out


def _set_path(d: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    for p in parents:
        d = d[p]
    d[leaf] = value


def _get_path(d: dict, path: str):
    for p in path.split("."):
        d = d[p]
    return d


def resolve(task, preset: str, method_cls, seed: int, device: str, overrides: dict[str, str],
            method_names: list[str]) -> dict:
    """The full, explicit configuration of one run."""
    if preset not in task.presets:
        raise UserError(f"unknown preset '{preset}' for task '{task.name}'; valid: {', '.join(task.presets)}")
    preset_d = copy.deepcopy(task.presets[preset])
    per_method = preset_d.pop("methods", {})
    setup = deep_merge(SETUP_DEFAULTS, getattr(task, "setup_defaults", {}))
    setup = deep_merge(setup, preset_d)
    hparams = deep_merge(method_cls.defaults, per_method.get(method_cls.name, {}))
    setup_keys = flat_keys(setup)
    for key, text in overrides.items():
        head, _, rest = key.partition(".")
        if head in method_names:
            if head != method_cls.name:
                continue  # an override for another method in the same sweep
            if rest not in hparams:
                raise UserError(f"--set {key}: method '{head}' has no parameter '{rest}'; "
                                f"valid: {', '.join(sorted(hparams)) or 'none'}")
            hparams[rest] = coerce(key, text, hparams[rest])
        elif key in setup_keys:
            _set_path(setup, key, coerce(key, text, _get_path(setup, key)))
        else:
            raise UserError(f"--set {key}: unknown key; valid: {', '.join(setup_keys)}, "
                            f"or METHOD.PARAM (see `asyncfl-bench list --params`)")
    return {"schema": SCHEMA, "task": task.name, "preset": preset, "method": method_cls.name,
            "seed": seed, "device": device, "setup": setup, "method_params": hparams}


