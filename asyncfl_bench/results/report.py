"""Leaderboard and plots from a results folder (pandas in, Markdown/CSV/PNG/HTML out)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from asyncfl_bench.errors import UserError
from asyncfl_bench.results import claim_tables, html, plots, sensitivity
from asyncfl_bench.results.columns import DEFAULT, DIAGNOSTIC, ranking_groups
from asyncfl_bench.results.metrics import (
    mean_accuracy_over_time,
    mean_ci,
    time_to_target,
)
from asyncfl_bench.atomic import atomic_write
from asyncfl_bench.results.store import iter_runs, read_curve

REFERENCE = "fedbuff"   # speedups are relative to FedBuff, the standard async baseline


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


LABEL_KEYS = 3      # settings a variant label names; more are counted ("+2 more")
LABEL_VALUE = 20    # characters of a setting's value a label shows


def _shown(value) -> str:
    text = str(value)
    return text if len(text) <= LABEL_VALUE else text[:LABEL_VALUE - 1] + "…"


def variant_labels(configs: list[dict]) -> list[str]:
    """``method`` or ``method[key=value,...]`` naming the settings that differ between runs of
    one method on one task/preset (an ablation such as fedrevive[beta=fixed:0.5]), so runs with
    different settings are never pooled into one row. Settings set in every run come first
    (an ablation; a setting some runs lack comes from another version of the method); at
    most ``LABEL_KEYS`` are named, values cut at ``LABEL_VALUE`` characters, and labels
    that would then read alike get a digest of their settings (``#1a2b``)."""
    import hashlib

    flat = [{**_flat(c.get("method_params", {})), **_flat(c.get("setup", {}), "setup.")} for c in configs]
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(configs):
        # tuned and default runs of one method are told apart by "tuned" alone: the values
        # and the hold-out that tuning changed would otherwise all land in the label
        groups.setdefault((c["task"], c["preset"], c["method"], is_tuned(c)), []).append(i)
    labels = [c["method"] for c in configs]
    for (task, preset, method, tuned), idx in groups.items():
        keys = sorted({k for i in idx for k in flat[i]})
        varying = [k for k in keys if len({repr(flat[i].get(k)) for i in idx}) > 1]
        varying.sort(key=lambda k: any(k not in flat[i] for i in idx))   # stable: alphabetical within each
        full: dict[str, set[str]] = {}
        for i in idx:
            named = [f"{k}={_shown(flat[i].get(k))}" for k in varying[:LABEL_KEYS]]
            more = [f"+{len(varying) - LABEL_KEYS} more"] if len(varying) > LABEL_KEYS else []
            parts = (["tuned"] if tuned else []) + named + more
            if parts:
                labels[i] = f"{method}[{','.join(parts)}]"
                full.setdefault(labels[i], set()).add(repr([flat[i].get(k) for k in varying]))
        for i in idx:
            if len(full.get(labels[i], ())) > 1:   # cut values made two settings read alike
                digest = hashlib.sha1(repr([flat[i].get(k) for k in varying]).encode()).hexdigest()[:4]
                labels[i] = f"{labels[i][:-1]},#{digest}]"
    return labels


def is_tuned(config: dict) -> bool:
    """``run --tuned`` records the tuning budget under ``tuning`` in the run's config."""
    return bool(config.get("tuning"))


def tuning_budget(config: dict) -> str:
    """The budget a tuned run's values came from, in words (``""`` for default values)."""
    t = config.get("tuning") or {}
    if not t:
        return ""
    return (f"{t.get('trials', '?')} trials × {t.get('runs_per_trial', '?')} run(s), "
            f"{t.get('objective', '?')} on validation")


def load(results: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per finished run, and all their curves (with task/preset/method/seed columns;
    ``method`` carries a variant label where one method ran with different settings)."""
    found = list(iter_runs(results))
    if not found:
        raise UserError(f"no finished runs under {results}; fix: asyncfl-bench run --results {results}")
    labels = variant_labels([config for _, config, _ in found])
    runs, curves = [], []
    for (folder, config, summary), label in zip(found, labels):
        diagnostics = summary.get("diagnostics")
        runs.append({"task": config["task"], "preset": config["preset"], "method": label,
                     "seed": config["seed"], "folder": str(folder), "tuned": is_tuned(config),
                     "tuning_budget": tuning_budget(config),
                     **{k: v for k, v in summary.items() if not isinstance(v, dict) and k != "method"},
                     # a method's own numbers (e.g. FedRevive's mean β): shown under their keys
                     **({f"{DIAGNOSTIC}{k}": v for k, v in diagnostics.items() if _is_number(v)}
                        if isinstance(diagnostics, dict) else {})})
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


def mean_ci_cell(values: pd.Series) -> str:
    """``mean ± half-width`` of the 95 % CI; one seed has no spread to show, so ``(n = 1)``."""
    mean, half = mean_ci(values)
    return f"{mean:.3f} (n = 1)" if len(values) == 1 else f"{mean:.3f} ± {half:.3f}"


def _ttt_cell(values: pd.Series) -> str:
    reached = int(values.notna().sum())
    if reached == len(values):
        return f"{values.mean():.1f}"      # only when every seed got there
    return f"— ({reached}/{len(values)})"


def _hyperparameters_cell(g: pd.DataFrame) -> str:
    """``default``, or ``tuned`` with the budget (one label never mixes the two)."""
    if "tuned" not in g or not g["tuned"].fillna(False).astype(bool).any():
        return DEFAULT
    budgets = sorted(set(g.get("tuning_budget", pd.Series(dtype=str)).dropna()) - {""})
    return "tuned" + (f" ({'; '.join(budgets)})" if budgets else "")


def _reference_of(group: pd.DataFrame) -> pd.DataFrame:
    """FedBuff's runs in one hyperparameter group (``fedbuff``, or ``fedbuff[tuned]`` among
    tuned runs), so tuned methods are compared with tuned FedBuff."""
    return group[group["method"].isin([REFERENCE, f"{REFERENCE}[tuned]"])]


def _step_cell(values: pd.Series) -> str:
    values = values.dropna()
    return f"{values.mean():.3g}" if len(values) else "—"   # results that predate the field


def _engaged_cell(g: pd.DataFrame) -> str:
    """``yes``, ``no (k/n runs)`` where k of the method's n runs never engaged its mechanism
    (summary.json ``engaged``), ``—`` for methods without one (and results that predate it)."""
    if "engaged" not in g:
        return "—"
    known = g["engaged"].dropna()
    if known.empty:
        return "—"
    never = int((~known.astype(bool)).sum())   # bools here: dropna took the methods without one
    return "yes" if never == 0 else f"no ({never}/{len(g)} runs)"


def _engagement_note(task: str, preset: str, method: str, g: pd.DataFrame) -> str | None:
    """The warning for a method with runs that never engaged: which, and the first run's reason and fix."""
    if "engaged" not in g:
        return None
    never = g[g["engaged"].map(lambda v: isinstance(v, (bool, np.bool_)) and not v)]   # None/NaN: no mechanism
    if never.empty:
        return None
    said = never["engagement"].dropna() if "engagement" in never else pd.Series(dtype=object)
    what = said.iloc[0] if len(said) else f"{method} never engaged its mechanism"
    seeds = ", ".join(str(s) for s in sorted(never["seed"]))
    return (f"{task}/{preset} {method}: {len(never)} of {len(g)} runs (seed {seeds}) never engaged the method's "
            f"mechanism, so they measure its aggregation alone: {what}")


def leaderboard(runs: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per task × preset × method: mean ± 95 % CI over seeds, times to two targets, mean
    accuracy over time, the effective server step, speedup and paired per-seed wins/losses
    against FedBuff. Runs on default and on tuned hyperparameters (and tunes of different
    budgets) are ranked in separate groups, each against its own FedBuff: default first,
    then each budget, each best first."""
    m = per_run_metrics(runs, curves)
    m["hyperparameters"] = m.groupby(["task", "preset", "method"])["method"].transform(
        lambda g: _hyperparameters_cell(m.loc[g.index]))
    diagnostics = sorted(c for c in m.columns if c.startswith(DIAGNOSTIC))
    rows, notes = [], {}
    for (task, preset, hyper), group in m.groupby(["task", "preset", "hyperparameters"], sort=True):
        ref = _reference_of(group).set_index("seed")
        ref_ttt = ref["ttt"].mean() if len(ref) and ref["ttt"].notna().all() else np.nan
        for method, g in group.groupby("method"):
            final = g["final_accuracy"].mean()
            note = _engagement_note(task, preset, method, g)
            if note:
                notes[(task, preset, method)] = note
            mean_ttt = g["ttt"].mean() if g["ttt"].notna().all() else np.nan
            paired = g.set_index("seed")["final_accuracy"].align(ref["final_accuracy"], join="inner")
            wins, losses = int((paired[0] > paired[1]).sum()), int((paired[0] < paired[1]).sum())
            target = g["target_accuracy"].iloc[0]
            slow = {}
            if "final_slow_class_accuracy" in g and g["final_slow_class_accuracy"].notna().all():
                slow = {"slow_class_acc": mean_ci_cell(g["final_slow_class_accuracy"]),
                        "slow_class_acc_over_run": f"{g['mean_slow_class_accuracy'].mean():.3f}"}
            rows.append({
                "task": task, "preset": preset, "method": method,
                "hyperparameters": hyper,
                "final_acc": mean_ci_cell(g["final_accuracy"]),
                **slow,
                "best_acc": f"{g['best_accuracy'].mean():.3f}",
                "mean_acc_over_time": f"{g['mean_acc_over_time'].mean():.3f}",
                "effective_step": _step_cell(g["effective_server_step"]) if "effective_server_step" in g else "—",
                "ttt_low": _ttt_cell(g["ttt_low"]),
                "ttt": _ttt_cell(g["ttt"]),
                "targets": f"{target - 0.1:.2f}/{target:.2f}",
                "speedup_vs_fedbuff": (f"{ref_ttt / mean_ttt:.2f}×" if np.isfinite(ref_ttt) and np.isfinite(mean_ttt)
                                       else "—"),
                "wins_vs_fedbuff": ("—" if method in (REFERENCE, f"{REFERENCE}[tuned]") or paired[0].empty
                                    else f"{wins}W/{losses}L"),
                "diverged": (f"{int(g['diverged'].sum())} (at t={', '.join(f'{t:.1f}' for t in g.loc[g['diverged'], 'diverged_at'])})"
                             if g["diverged"].any() else "0"),
                "engaged": _engaged_cell(g),
                "seeds": len(g),
                **{c: _step_cell(g[c]) for c in diagnostics},
                "_group": (hyper != DEFAULT, hyper),
                "_sort": -final,
            })
    board = pd.DataFrame(rows)
    board = board.sort_values(["task", "preset", "_group", "_sort"], kind="stable").drop(columns=["_group", "_sort"])
    if "slow_class_acc" in board:   # intertwined traces: accuracy on the delayed classes, next to overall
        cols = [c for c in board.columns if not c.startswith("slow_class_acc")]
        at = cols.index("final_acc") + 1
        board = board[cols[:at] + ["slow_class_acc", "slow_class_acc_over_run"] + cols[at:]]
        board[["slow_class_acc", "slow_class_acc_over_run"]] = board[
            ["slow_class_acc", "slow_class_acc_over_run"]].fillna("—")
    board = board.reset_index(drop=True)
    # runs whose method never engaged its mechanism (FedRevive that distilled nothing, ...)
    board.attrs["engagement"] = notes
    board.attrs["warnings"] = list(notes.values())
    return board


def synchronous_runs(runs: pd.DataFrame) -> pd.Series:
    """Per run: did it use a synchronous schedule (rounds)? From ``summary.json`` where it
    says so; for results that predate that field, from the method's class (this imports
    the methods, and with them torch)."""
    if "synchronous" in runs and runs["synchronous"].notna().all():
        return runs["synchronous"].astype(bool)
    from asyncfl_bench.config.registry import methods

    sync = {name for name, cls in methods().items() if getattr(cls, "synchronous", False)}
    return runs["method"].str.split("[", n=1).str[0].isin(sync)   # a variant label's method


def schedule_table(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The schedule hash of every run, and a warning wherever asynchronous methods compared
    in one task/preset/seed ran on different schedules (synchronous ones have their own)."""
    cols = ["task", "preset", "seed", "method", "schedule_hash"]
    table = runs.reindex(columns=cols).assign(_sync=synchronous_runs(runs)).sort_values(cols[:4])
    warnings = []
    for (task, preset, seed), g in table.groupby(["task", "preset", "seed"], sort=True):
        async_runs = g[~g["_sync"]]
        hashes = async_runs["schedule_hash"].fillna("unknown")
        if hashes.nunique() > 1:
            groups = "; ".join(f"{h}: {', '.join(m['method'])}" for h, m in async_runs.groupby(hashes))
            warnings.append(f"{task}/{preset} seed {seed}: methods ran on different schedules ({groups}); "
                            "their results are not comparable — rerun them with the same trace")
    return table.drop(columns="_sync").reset_index(drop=True), warnings


def _schedule_column(runs: pd.DataFrame) -> pd.Series:
    """Per task/preset/method: the schedule hash, or how many differ (one per seed is normal)."""
    def label(hashes: pd.Series) -> str:
        unique = hashes.fillna("unknown").unique()
        return unique[0] if len(unique) == 1 else f"{len(unique)} schedules"
    return runs.groupby(["task", "preset", "method"])["schedule_hash"].agg(label)


def write_plots(runs: pd.DataFrame, curves: pd.DataFrame, task: str, preset: str, out: Path,
                results: Path | None = None) -> list[Path]:
    """PNGs of one task/preset: accuracy against virtual time (every run drawn to its own
    end, mean and min–max band over seeds; one panel per method with the others greyed
    behind it from ``plots.SMALL_MULTIPLES_FROM`` methods on), on intertwined traces the
    slow classes' accuracy, and where ``results`` holds a tune of this task/preset, its
    sensitivity plot."""
    pick = lambda f: f[(f["task"] == task) & (f["preset"] == preset)]
    sub, sub_runs = pick(curves), pick(runs)
    colors = plots.method_colors(sub["method"].unique())
    many = sub["method"].nunique() >= plots.SMALL_MULTIPLES_FROM
    band = "band: min–max over seeds"
    path = out / f"{task}-{preset}-accuracy.png"
    plots.save_png(plots.curve_figure(sub, "time", "accuracy", "test accuracy",
                                      f"{task} · {preset}: accuracy vs virtual time ({band})", colors, many), path)
    written = [path]
    spec = sub_runs["slow_classes"].dropna().unique() if "slow_classes" in sub_runs else []
    cols = [f"class_acc_{c}" for c in str(spec[0]).split("/")] if len(spec) == 1 else []
    if cols and all(c in sub for c in cols):   # runs that delayed different classes have no common curve
        path = out / f"{task}-{preset}-slow-class-accuracy.png"
        plots.save_png(plots.curve_figure(sub.assign(slow=sub[cols].mean(axis=1)), "time", "slow",
                                          f"accuracy on slow class(es) {spec[0]}",
                                          f"{task} · {preset}: slow-class accuracy ({band})", colors, many), path)
        written.append(path)
    tuned = sensitivity.read_tuned(results, task, preset) if results is not None else None
    fig = sensitivity.sensitivity(results, tuned, colors)[0] if tuned is not None else None
    if fig is not None:
        path = out / f"{task}-{preset}-tuning-sensitivity.png"
        plots.save_png(fig, path)
        written.append(path)
    return written


def build_report(results: Path, out: Path, with_html: bool = True) -> tuple[pd.DataFrame, list[Path]]:
    """leaderboard.csv/.md, schedules.csv, claims.md (when claims were run), PNGs
    (``write_plots``) and (``with_html``) report.html, first in the list, in ``out``."""
    runs, curves = load(Path(results))
    board = leaderboard(runs, curves)
    if "schedule_hash" in runs:
        schedules, schedule_warnings = schedule_table(runs)
        board.attrs["warnings"] = board.attrs.get("warnings", []) + schedule_warnings
        board["schedule"] = [_schedule_column(runs).get((t, p, m), "—")
                             for t, p, m in board[["task", "preset", "method"]].itertuples(index=False)]
    out = Path(out)
    written = [out / "leaderboard.csv", out / "leaderboard.md"]
    if "schedule_hash" in runs:
        written.append(out / "schedules.csv")
        atomic_write(written[-1], schedules.to_csv(index=False).encode())
    atomic_write(written[0], board.to_csv(index=False).encode())
    atomic_write(written[1], _markdown(board).encode())
    claims = claim_tables.claim_tables(Path(results))
    if claims:   # what `claims run` decided, beside the runs it decided from
        figures = {}
        for scale, _, _, raw in claims:
            if claim_tables.plottable(raw):
                path = out / f"claims-{scale}.png"
                plots.save_png(plots.claims_figure(raw, f"claims at scale {scale}"), path)
                figures[scale] = path.name
                written.append(path)
        written.append(out / "claims.md")
        atomic_write(written[-1], claim_tables.markdown(claims, _markdown_table, figures).encode())
    for task, preset in runs[["task", "preset"]].drop_duplicates().itertuples(index=False):
        written += write_plots(runs, curves, task, preset, out, Path(results))
    if with_html:
        page = html.render(Path(results), out, runs.assign(synchronous=synchronous_runs(runs)), curves, board,
                           REFERENCE, board.attrs.get("warnings", []))
        written.insert(0, out / "report.html")
        atomic_write(written[0], page.encode())
    for path in written:   # a report is for sharing: readable as the umask allows, as a plain write would be
        path.chmod(0o666 & ~_umask())
    return board, written


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    # a "|" inside a cell would end it early
    cell = lambda v: str(v).replace("|", "\\|")
    head = "| " + " | ".join(map(cell, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    return [head, sep, *("| " + " | ".join(map(cell, r)) + " |" for r in frame.itertuples(index=False))]


def _markdown(board: pd.DataFrame) -> str:
    """One table per ranking (task, preset, default or tuned with its budget), each under a
    heading that says which, so default and tuned rows are never read as one ranking."""
    lines = ["# Leaderboard", ""]
    notes = board.attrs.get("engagement", {})
    for task, preset, hyper, rows in ranking_groups(board):
        what = "default hyperparameters" if hyper == DEFAULT else f"{hyper} hyperparameters"
        lines += [f"## {task} · preset {preset} · {what}", "", *_markdown_table(rows), ""]
        lines += [f"> warning: {notes[(task, preset, m)]}" for m in rows["method"] if (task, preset, m) in notes]
        lines += [""] if any((task, preset, m) in notes for m in rows["method"]) else []
    return "\n".join(lines)
