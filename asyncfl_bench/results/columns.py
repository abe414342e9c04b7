"""The leaderboard's columns as people read them: their order of importance, a short
label and what each one means (terminal headings, HTML headings and their tooltips)."""
from __future__ import annotations

# most important first: the terminal shows as many as fit, the HTML page shows them in this
# order (leaderboard.md/.csv keep the leaderboard's own order)
IMPORTANCE = ["method", "final_acc", "slow_class_acc", "ttt", "speedup_vs_fedbuff", "mean_acc_over_time",
              "wins_vs_fedbuff", "effective_step", "diverged", "engaged", "seeds", "hyperparameters", "ttt_low",
              "best_acc", "slow_class_acc_over_run", "targets", "schedule"]
DIAGNOSTIC = "diagnostics."   # the leaderboard's columns from summary.json's ``diagnostics``
DEFAULT = "default"           # the hyperparameters cell of runs on the methods' own defaults

LABELS = {
    "final_acc": "final acc", "slow_class_acc": "slow-class acc", "slow_class_acc_over_run": "slow-class acc over run",
    "best_acc": "best acc", "mean_acc_over_time": "acc over time", "ttt_low": "time to lower target",
    "ttt": "time to target", "speedup_vs_fedbuff": "speedup vs fedbuff", "wins_vs_fedbuff": "W/L vs fedbuff",
    "effective_step": "server step",
}

MEANINGS = {
    "final_acc": "test accuracy at the end of the run: mean ± 95 % CI over seeds (n = 1: a single seed, no spread)",
    "slow_class_acc": "final accuracy on the classes the trace delays",
    "slow_class_acc_over_run": "accuracy on the delayed classes, averaged over the run's evaluations",
    "best_acc": "best test accuracy seen during the run (mean over seeds)",
    "mean_acc_over_time": "area under accuracy against virtual time up to the common horizon (the shortest run), "
                          "divided by it",
    "ttt_low": "virtual time to the lower target (mean over seeds; — (k/n): only k of n seeds got there)",
    "ttt": "virtual time to the task's target accuracy (mean over seeds; — (k/n): only k of n seeds got there)",
    "targets": "lower target / target accuracy",
    "speedup_vs_fedbuff": "FedBuff's time to target divided by this method's",
    "wins_vs_fedbuff": "seeds where the final accuracy beat / lost to FedBuff's on the same seed",
    "diverged": "runs whose loss became non-finite (kept in every statistic), with the virtual time",
    "engaged": "whether the method's own mechanism ran (FedRevive distilled an arrival, gi-switch inverted an "
               "update, FedEcho's synthetic U was made): yes, no (k/n runs) — such runs measure the method's "
               "aggregation alone — or — for methods without one",
    "seeds": "number of seeds",
    "effective_step": "effective server step per arrival, mean over seeds: Σ‖x_{v+1} − x_v‖ over the run divided "
                      "by Σ‖Δ_i‖ of the arrivals (how much of the clients' updates reached the model)",
    "hyperparameters": "default: the method's own defaults; tuned: values from `tune` (run --tuned), with the "
                       "budget they were chosen with",
    "schedule": "hash of the arrival schedule (the same for every asynchronous method of a seed)",
}


def label(column: str) -> str:
    return LABELS.get(column, column.removeprefix(DIAGNOSTIC))


def meaning(column: str) -> str:
    if column.startswith(DIAGNOSTIC):
        return (f"the method's own diagnostic '{column.removeprefix(DIAGNOSTIC)}' from summary.json "
                "(mean over seeds; — where the method records none)")
    return MEANINGS.get(column, "")


def by_importance(names) -> list[str]:
    """``names`` in order of importance; columns not ranked keep their order, last."""
    names = list(names)
    return [c for c in IMPORTANCE if c in names] + [c for c in names if c not in IMPORTANCE]


def ranking_groups(board):
    """(task, preset, hyperparameters, rows) per ranking of a leaderboard: runs on default
    and on tuned hyperparameters (or on two tuning budgets) are never ranked in one list.
    In the board's order: default before tuned."""
    for key, rows in board.groupby(["task", "preset", "hyperparameters"], sort=False):
        yield (*key, rows)
