"""A made-up results folder as `run` leaves it (known curves, no training): default and
tuned rows, for the report's tests."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from asyncfl_bench.config.settings import run_id

METHODS = {"fedbuff": 0.80, "fedasync": 0.70, "fedavg-sync": 0.90}   # final accuracy per method
MACHINE = {"cpu": "Test CPU 3000", "cpus": 8, "accelerator": "none", "os": "Linux-test", "python": "3.11.0",
           "torch": "2.13.0+cpu", "numpy": "2.0.0", "asyncfl_bench": "0.1.0"}   # summary.json's "machine"
TUNING = {"objective": "final_accuracy", "trials": 3, "runs_per_trial": 1, "tuning_seeds": [1000],
          "validation_fraction": 0.1}      # the record `run --tuned` puts in a run's config


def write_run(root: Path, method: str, seed: int, final: float, tuned: bool = False, diverged: bool = False,
              trace: str = "fedrevive", params: dict | None = None) -> Path:
    """One finished run folder as `run` writes it, with a known curve (no training)."""
    sync = method == "fedavg-sync"
    config = {"task": "digits", "preset": "ci", "method": method, "seed": seed, "device": "cpu",
              "method_params": params or {}, "setup": {"trace": trace}, **({"tuning": TUNING} if tuned else {})}
    folder = root / "digits" / method / run_id(config)   # named by its config's hash, as `run` names it
    folder.mkdir(parents=True)
    end = 30.0 if sync else 10.0 + seed            # the synchronous run needs more virtual time
    t = np.linspace(0, end, 7)
    acc = np.linspace(0.1, final, 7)
    curve = pd.DataFrame({"arrivals": np.arange(0, 70, 10), "version": np.arange(7), "time": t, "accuracy": acc,
                          "loss": 2 - acc, "class_acc_0": acc, "class_acc_1": acc / 2})
    curve.to_csv(folder / "curve.csv", index=False)
    pd.DataFrame({"arrival": np.arange(1, 61), "client": 0, "time": np.linspace(0.1, end, 60),
                  "staleness": np.zeros(60, int) if sync else np.arange(60) % 5, "base_version": 0}
                 ).to_csv(folder / "arrivals.csv", index=False)
    (folder / "config.json").write_text(json.dumps(config))
    summary = {"task": "digits", "method": method, "seed": seed, "final_accuracy": final, "best_accuracy": final,
               "target_accuracy": 0.5, "time_to_target": float(t[acc >= 0.5][0]), "final_time": end,
               "arrivals": 60, "schedule_hash": "sync" if sync else f"s{seed}", "synchronous": sync,
               "diverged": diverged, "diverged_at": 5.0 if diverged else None, "server_ms_per_arrival": 1.5 + seed,
               "threads": 1, "machine": MACHINE,
               **({"slow_classes": "1"} if trace.startswith("intertwined") else {})}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


TRIAL_SETUP = {"trace": "fedrevive", "target_accuracy": 0.5, "validation_fraction": 0.1}


def write_trial_run(root: Path, server_lr: float, val_final: float, seed: int = 1000, setup=None) -> None:
    """One run of a tuning trial as `tune` leaves it under RESULTS/tuned/trials/."""
    config = {"task": "digits", "preset": "ci", "method": "fedbuff", "seed": seed,
              "method_params": {"server_lr": server_lr, "buffer_size": 5},
              "setup": {**(setup or TRIAL_SETUP), "evaluate_on": "validation"}}
    folder = root / "tuned" / "trials" / "digits" / "fedbuff" / run_id(config)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    pd.DataFrame({"arrivals": [0, 10], "time": [0.0, 4.0], "accuracy": [np.nan, np.nan],
                  "val_accuracy": [0.1, val_final]}).to_csv(folder / "curve.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"diverged": False, "final_accuracy": val_final}))


def write_tuning(root: Path) -> None:
    """A tuned-values file (the format `tune` writes) and its three trials, plus runs that are
    not its trials: another setup, and a seed that is not a tuning seed."""
    (root / "tuned").mkdir(parents=True, exist_ok=True)
    (root / "tuned" / "digits-ci.json").write_text(json.dumps({
        "format": "asyncfl-bench tuned values", "schema": 1, "task": "digits", "preset": "ci",
        "objective": "final_accuracy", "direction": "maximize",
        "budget": {"trials": 3, "runs_per_trial": 1, "sampler": "TPE", "sampler_seed": 0, "startup_trials": 10},
        "tuning_seeds": [1000], "validation_fraction": 0.1, "setup": TRIAL_SETUP, "storage": "digits-ci.db",
        "methods": {"fedbuff": {"params": {"server_lr": 0.5}, "value": 0.8, "best_trial": 1, "study": "s",
                                "space": {"server_lr": "log:low=0.1,high=5.0"}}}}))
    for lr in (0.1, 0.5, 1.0):
        write_trial_run(root, lr, 0.8 - abs(lr - 0.5))
    write_trial_run(root, 2.0, 0.99, setup={**TRIAL_SETUP, "trace": "constant"})   # another tune's setup
    write_trial_run(root, 3.0, 0.99, seed=7)                                        # not a tuning seed


def write_study(storage: Path) -> None:
    """The study `write_tuning`'s file names ("s"), as `tune` leaves it in its SQLite storage:
    a failed trial, three finished ones, and a fourth beyond the file's budget of three."""
    import optuna
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{storage}", direction="maximize")
    space = {"server_lr": FloatDistribution(0.1, 5.0, log=True)}
    study.add_trial(create_trial(params={"server_lr": 1.5}, distributions=space, state=TrialState.FAIL))
    for lr, value in [(0.2, 0.6), (0.5, 0.9), (3.0, 0.1), (4.0, 0.95)]:
        study.add_trial(create_trial(params={"server_lr": lr}, distributions=space, value=value))


def make_results(root: Path, seeds=(0, 1), trace: str = "fedrevive", tuning: bool = False,
                 claims: bool = False) -> Path:
    """fedbuff tuned, fedasync (one seed diverged) and fedavg-sync on default values;
    ``tuning``: also the tuned-values file and trial runs `tune` leaves (``write_tuning``);
    ``claims``: a claims table under claims/."""
    for method, final in METHODS.items():
        for seed in seeds:
            write_run(root, method, seed, final + 0.01 * seed, tuned=method == "fedbuff",
                      diverged=method == "fedasync" and seed == 1, trace=trace)
    if tuning:
        write_tuning(root)
    if claims:
        (root / "claims").mkdir()
        pd.DataFrame({"claim": ["fedbuff-vs-fedasync"], "scale": ["ci"], "against": ["fedasync"],
                      "paper": ["FedBuff"], "paper_figure": ["up to 2.5x"], "measured": ["1.29× faster [0.79, 2.08]"],
                      "metric": ["arrivals_to_target"], "kind": ["time"], "effect": [0.25], "low": [-0.23],
                      "high": [0.73], "effects": ["0.2 0.3 0.25"], "wins": [3], "seeds": [3], "censored": ["0/0"], "verdict": ["inconclusive"],
                      "claim_verdict": ["inconclusive"], "runs": ["fedbuff/a fedasync/b"], "wall_seconds": [11.0]}
                     ).to_csv(root / "claims" / "ci.csv", index=False)
        (root / "claims" / "small.csv").write_text("")   # cut off while written: reported, not fatal
    return root
