"""A made-up results folder as `run` leaves it (known curves, no training): default and
tuned rows, for the report's tests."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

METHODS = {"fedbuff": 0.80, "fedasync": 0.70, "fedavg-sync": 0.90}   # final accuracy per method
TUNING = {"objective": "final_accuracy", "trials": 3, "runs_per_trial": 1, "tuning_seeds": [1000],
          "validation_fraction": 0.1}      # the record `run --tuned` puts in a run's config


def write_run(root: Path, method: str, seed: int, final: float, tuned: bool = False, diverged: bool = False,
              trace: str = "fedrevive", params: dict | None = None, rid: str = "") -> Path:
    """One finished run folder as `run` writes it, with a known curve (no training)."""
    sync = method == "fedavg-sync"
    rid = rid or f"{method[:4]}{seed}{'t' if tuned else ''}"
    folder = root / "digits" / method / rid
    folder.mkdir(parents=True)
    config = {"task": "digits", "preset": "ci", "method": method, "seed": seed, "method_params": params or {},
              "setup": {"trace": trace}, **({"tuning": TUNING} if tuned else {})}
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
               **({"slow_classes": "1"} if trace.startswith("intertwined") else {})}
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def make_results(root: Path, seeds=(0, 1), trace: str = "fedrevive") -> Path:
    """fedbuff tuned, fedasync (one seed diverged) and fedavg-sync on default values."""
    for method, final in METHODS.items():
        for seed in seeds:
            write_run(root, method, seed, final + 0.01 * seed, tuned=method == "fedbuff",
                      diverged=method == "fedasync" and seed == 1, trace=trace)
    return root
