"""Leaderboard and plots from a results folder (pandas in, Markdown/CSV/PNG out)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from asyncfl_bench.errors import UserError
from asyncfl_bench.results.metrics import mean_accuracy_over_time, mean_ci, time_to_target
from asyncfl_bench.results.store import atomic_write, iter_runs, read_curve

REFERENCE = "fedbuff"   # speedups are relative to FedBuff, the standard async baseline


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def variant_labels(configs: list[dict]) -> list[str]:
    """``method`` or ``method[key=value,...]`` naming the settings that differ between runs of
    one method on one task/preset (an ablation such as fedrevive[beta=fixed:0.5]), so runs with
    different settings are never pooled into one row."""
    flat = [{**_flat(c["method_params"]), **_flat(c["setup"], "setup.")} for c in configs]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault((c["task"], c["preset"], c["method"]), []).append(i)
    labels = [c["method"] for c in configs]
    for (_, _, method), idx in groups.items():
        keys = sorted({k for i in idx for k in flat[i]})
        varying = [k for k in keys if len({repr(flat[i].get(k)) for i in idx}) > 1]
        for i in idx:
            if varying:
                labels[i] = f"{method}[{','.join(f'{k}={flat[i].get(k)}' for k in varying)}]"
    return labels


def load(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per finished run, and all their curves (with task/preset/method/seed columns;
    ``method`` carries a variant label where one method ran with different settings)."""
    found = list(iter_runs(results))
    if not found:
        raise UserError(f"no finished runs under {results}; fix: asyncfl-bench run --results {results}")
    labels = variant_labels([config for _, config, _ in found])
    runs, curves = [], []
    for (folder, config, summary), label in zip(found, labels):
        runs.append({"task": config["task"], "preset": config["preset"], "method": label,
                     "seed": config["seed"], "folder": str(folder),
                     **{k: v for k, v in summary.items() if not isinstance(v, dict) and k != "method"}})
        c = read_curve(folder)
        c["task"], c["preset"], c["method"], c["seed"] = config["task"], config["preset"], label, config["seed"]
        curves.append(c)
    return pd.DataFrame(runs), pd.concat(curves, ignore_index=True)


def per_run_metrics(runs: pd.DataFrame, curves: pd.DataFrame, lower_gap: float = 0.1) -> pd.DataFrame:
    """Per run: time to the task's target and to a lower one, and mean accuracy over a common
    horizon (the shortest run of its task/preset, so every method is measured on one window)."""
    out = runs.copy()
    keys = ["task", "preset", "method", "seed"]
    by_run = {k: c for k, c in curves.groupby(keys)}
    horizon = curves.groupby(["task", "preset", "method", "seed"])["time"].max().groupby(["task", "preset"]).min()
    ttt_low, ttt, auc = [], [], []
    for r in out.itertuples(index=False):
        c = by_run[(r.task, r.preset, r.method, r.seed)]
        ttt_low.append(time_to_target(c, r.target_accuracy - lower_gap))
        ttt.append(time_to_target(c, r.target_accuracy))
        auc.append(mean_accuracy_over_time(c, horizon[(r.task, r.preset)]))
    out["ttt_low"] = pd.Series(ttt_low, index=out.index, dtype=float)   # None (never reached) → NaN
    out["ttt"] = pd.Series(ttt, index=out.index, dtype=float)
    out["mean_acc_over_time"] = auc
    return out


def _ttt_cell(values: pd.Series) -> str:
    reached = int(values.notna().sum())
    if reached == len(values):
        return f"{values.mean():.1f}"      # only when every seed got there
    return f"— ({reached}/{len(values)})"


def leaderboard(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per task × preset × method: mean ± 95 % CI over seeds, times to two targets, mean
    accuracy over time, speedup and paired per-seed wins/losses against FedBuff."""
    m = per_run_metrics(runs, curves)
    rows = []
    for (task, preset), group in m.groupby(["task", "preset"], sort=True):
        ref = group[group["method"] == REFERENCE].set_index("seed")
        ref_ttt = ref["ttt"].mean() if len(ref) and ref["ttt"].notna().all() else np.nan
        for method, g in group.groupby("method"):
            final, half = mean_ci(g["final_accuracy"])
            mean_ttt = g["ttt"].mean() if g["ttt"].notna().all() else np.nan
            paired = g.set_index("seed")["final_accuracy"].align(ref["final_accuracy"], join="inner")
            wins, losses = int((paired[0] > paired[1]).sum()), int((paired[0] < paired[1]).sum())
            target = g["target_accuracy"].iloc[0]
            slow = {}
            if "final_slow_class_accuracy" in g and g["final_slow_class_accuracy"].notna().all():
                s_final, s_half = mean_ci(g["final_slow_class_accuracy"])
                slow = {"slow_class_acc": f"{s_final:.3f} ± {s_half:.3f}",
                        "slow_class_acc_over_run": f"{g['mean_slow_class_accuracy'].mean():.3f}"}
            rows.append({
                "task": task, "preset": preset, "method": method,
                "final_acc": f"{final:.3f} ± {half:.3f}",
                **slow,
                "best_acc": f"{g['best_accuracy'].mean():.3f}",
                "mean_acc_over_time": f"{g['mean_acc_over_time'].mean():.3f}",
                "ttt_low": _ttt_cell(g["ttt_low"]),
                "ttt": _ttt_cell(g["ttt"]),
                "targets": f"{target - 0.1:.2f}/{target:.2f}",
                "speedup_vs_fedbuff": (f"{ref_ttt / mean_ttt:.2f}×" if np.isfinite(ref_ttt) and np.isfinite(mean_ttt)
                                       else "—"),
                "wins_vs_fedbuff": "—" if method == REFERENCE or paired[0].empty else f"{wins}W/{losses}L",
                "diverged": (f"{int(g['diverged'].sum())} (at t={', '.join(f'{t:.1f}' for t in g.loc[g['diverged'], 'diverged_at'])})"
                             if g["diverged"].any() else "0"),
                "seeds": len(g),
                "_sort": -final,
            })
    board = pd.DataFrame(rows).sort_values(["task", "preset", "_sort"]).drop(columns="_sort")
    if "slow_class_acc" in board:   # intertwined traces: accuracy on the delayed classes, next to overall
        cols = [c for c in board.columns if not c.startswith("slow_class_acc")]
        at = cols.index("final_acc") + 1
        board = board[cols[:at] + ["slow_class_acc", "slow_class_acc_over_run"] + cols[at:]]
        board[["slow_class_acc", "slow_class_acc_over_run"]] = board[
            ["slow_class_acc", "slow_class_acc_over_run"]].fillna("—")
    return board.reset_index(drop=True)


def schedule_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The schedule hash of every run, and a warning wherever asynchronous methods compared
    in one task/preset/seed ran on different schedules (synchronous ones have their own)."""
    from asyncfl_bench.config.registry import methods

    sync = {name for name, cls in methods().items() if getattr(cls, "synchronous", False)}
    cols = ["task", "preset", "seed", "method", "schedule_hash"]
    table = runs.reindex(columns=cols).sort_values(cols[:4]).reset_index(drop=True)
    warnings = []
    for (task, preset, seed), g in table.groupby(["task", "preset", "seed"], sort=True):
        async_runs = g[~g["method"].isin(sync)]
        hashes = async_runs["schedule_hash"].fillna("unknown")
        if hashes.nunique() > 1:
            groups = "; ".join(f"{h}: {', '.join(m['method'])}" for h, m in async_runs.groupby(hashes))
            warnings.append(f"{task}/{preset} seed {seed}: methods ran on different schedules ({groups}); "
                            "their results are not comparable — rerun them with the same trace")
    return table, warnings


def _schedule_column(runs: pd.DataFrame) -> pd.Series:
    """Per task/preset/method: the schedule hash, or how many differ (one per seed is normal)."""
    def label(hashes: pd.Series) -> str:
        unique = hashes.fillna("unknown").unique()
        return unique[0] if len(unique) == 1 else f"{len(unique)} schedules"
    return runs.groupby(["task", "preset", "method"])["schedule_hash"].agg(label)


def plot_accuracy(curves: pd.DataFrame, task: str, preset: str, path: Path,
                  column: str = "accuracy", what: str = "accuracy") -> None:
    """Accuracy (or another curve ``column``) against virtual time, one line per method,
    band = min..max over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sub = curves[(curves["task"] == task) & (curves["preset"] == preset)]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    grid = np.linspace(0, sub.groupby(["method", "seed"])["time"].max().min(), 200)
    for method, g in sub.groupby("method"):
        ys = np.stack([np.interp(grid, c["time"], c[column]) for _, c in g.groupby("seed")])
        mean = ys.mean(0)
        line, = ax.plot(grid, mean, label=f"{method} (n={len(ys)})", lw=1.6)
        if len(ys) > 1:
            ax.fill_between(grid, ys.min(0), ys.max(0), color=line.get_color(), alpha=0.18, lw=0)
    ax.set_xlabel("virtual time (s)")
    ax.set_ylabel(f"test {what}")
    ax.set_title(f"{task} · {preset}: {what} vs time (band: min–max over seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def plot_slow_classes(runs: pd.DataFrame, curves: pd.DataFrame, task: str, preset: str, out: Path) -> Path | None:
    """For runs on an intertwined trace: accuracy on the delayed classes against time."""
    if "slow_classes" not in runs:
        return None
    spec = runs.loc[(runs["task"] == task) & (runs["preset"] == preset), "slow_classes"].dropna().unique()
    if len(spec) != 1:      # none, or runs that delayed different classes: no common curve
        return None
    cols = [f"class_acc_{c}" for c in str(spec[0]).split("/")]
    sub = curves[(curves["task"] == task) & (curves["preset"] == preset)].copy()
    if any(c not in sub for c in cols):
        return None
    sub["slow_class_accuracy"] = sub[cols].mean(axis=1)
    path = out / f"{task}-{preset}-slow-class-accuracy.png"
    plot_accuracy(sub, task, preset, path, "slow_class_accuracy", f"accuracy on slow class(es) {spec[0]}")
    return path


def build_report(results: Path, out: Path) -> tuple[pd.DataFrame, list[Path]]:
    runs, curves = load(Path(results))
    board = leaderboard(runs, curves)
    if "schedule_hash" in runs:
        schedules, board.attrs["warnings"] = schedule_table(runs)
        board["schedule"] = [_schedule_column(runs).get((t, p, m), "—")
                             for t, p, m in board[["task", "preset", "method"]].itertuples(index=False)]
    out = Path(out)
    written = [out / "leaderboard.csv", out / "leaderboard.md"]
    if "schedule_hash" in runs:
        written.append(out / "schedules.csv")
        atomic_write(written[-1], schedules.to_csv(index=False).encode())
    atomic_write(written[0], board.to_csv(index=False).encode())
    atomic_write(written[1], _markdown(board).encode())
    for task, preset in runs[["task", "preset"]].drop_duplicates().itertuples(index=False):
        path = out / f"{task}-{preset}-accuracy.png"
        plot_accuracy(curves, task, preset, path)
        written.append(path)
        path = plot_slow_classes(runs, curves, task, preset, out)
        if path is not None:
            written.append(path)
    return board, written


def _markdown(frame: pd.DataFrame) -> str:
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(map(str, r)) + " |" for r in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"
