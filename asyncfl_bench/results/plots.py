"""The report's figures: matplotlib ``Figure`` objects (no pyplot state), saved as PNG for
the Markdown report or as inline SVG for the HTML one.

Every method keeps one colour in every figure of a task/preset. Curves run to the end
of each method's own run (a dot marks where it ends), so a synchronous baseline that
needs more virtual time for the same arrivals is shown whole; a dotted line marks the
common horizon over which the leaderboard's "accuracy over time" is measured. From
``SMALL_MULTIPLES_FROM`` methods on, one panel per method (the others in grey behind it)
replaces one panel of tangled lines. In SVG, each method's artists carry ids
``<figure>-m<index>-<k>`` so the page can toggle and highlight them.
"""
from __future__ import annotations

import io
import math
import re

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from asyncfl_bench.atomic import write_with

SMALL_MULTIPLES_FROM = 5   # from this many methods on, the PNG draws one panel per method
GRID_POINTS = 200
MUTED = "#c4c4c4"
PNG_SIZE = (7, 4.2)      # inches; a PNG in the Markdown report
PAGE_SIZE = (4.8, 3.1)   # smaller figures for the HTML page: its SVG text stays legible at phone width


def method_colors(methods) -> dict[str, str]:
    """One colour per method, in sorted order: tab10 (tab20 beyond nine methods) without
    its greys, which are the background methods' colour in small multiples."""
    names = sorted(methods)
    cmap = matplotlib.colormaps["tab10" if len(names) <= 9 else "tab20"]
    palette = [matplotlib.colors.to_hex(cmap(i)) for i in range(cmap.N)]
    palette = [c for c in palette if c not in ("#7f7f7f", "#c7c7c7")]
    return {m: palette[i % len(palette)] for i, m in enumerate(names)}


def _darker(color: str, share: float = 0.4) -> str:
    """``color`` mixed with ``share`` black: tab10/tab20's pale colours are faint as text."""
    r, g, b = matplotlib.colors.to_rgb(color)
    return matplotlib.colors.to_hex(((1 - share) * r, (1 - share) * g, (1 - share) * b))


def wrapped(label: str, width: int = 30) -> str:
    """A method label over lines of at most about ``width`` characters, broken after its
    commas and its opening bracket (a variant label has no spaces to break at)."""
    lines = [""]
    for token in re.split(r"(?<=[,\[])", label):
        if lines[-1] and len(lines[-1]) + len(token) > width:
            lines.append("")
        lines[-1] += token
    return "\n".join(lines)


def seed_band(runs_of_method: pd.DataFrame, x: str, column: str) -> tuple[np.ndarray, ...]:
    """(grid, mean, min, max, number of seeds) of ``column`` against ``x`` over the seeds of
    one method, on a grid up to the end of its longest seed. A seed that ended earlier
    holds its last value (its final model), so the curve's last point is the mean final
    value the leaderboard reports."""
    seeds = [c.sort_values(x) for _, c in runs_of_method.groupby("seed")]
    end = max(float(c[x].max()) for c in seeds)
    grid = np.linspace(0.0, end, GRID_POINTS)
    ys = np.stack([np.interp(grid, c[x].to_numpy(float), c[column].to_numpy(float)) for c in seeds])
    return grid, ys.mean(0), ys.min(0), ys.max(0), len(seeds)


def common_horizon(curves: pd.DataFrame, x: str = "time") -> float:
    """The end of the shortest run: the window every method is measured on."""
    return float(curves.groupby(["method", "seed"])[x].max().min())


def _draw_method(ax, grid, mean, lo, hi, n, color, label=None, lw=1.6) -> list:
    line, = ax.plot(grid, mean, color=color, lw=lw, label=label)
    artists = [line]
    if n > 1:
        artists.append(ax.fill_between(grid, lo, hi, color=color, alpha=0.18, lw=0))
    artists += ax.plot(grid[-1:], mean[-1:], "o", color=color, ms=4)   # where this method's run ends
    return artists


def _horizon_line(ax, horizon: float, label: bool) -> None:
    ax.axvline(horizon, color="#555555", ls=":", lw=1)
    if label:
        # anchored at its own corner, so the label sits just left of the line whatever the font
        ax.annotate("common horizon", (horizon, 0.03), xycoords=("data", "axes fraction"), fontsize=7,
                    color="#555555", rotation=90, rotation_mode="anchor", ha="left", va="bottom")


def curve_figure(curves: pd.DataFrame, x: str, column: str, ylabel: str, title: str,
                 colors: dict[str, str], small_multiples: bool = False, figure_id: str = "",
                 size: tuple[float, float] = PNG_SIZE) -> Figure:
    """``column`` against ``x`` (virtual time or arrivals), the mean over seeds with a
    min–max band. One panel with every method, or (``small_multiples``) one panel per
    method with the others in grey behind it. With ``figure_id``, method i's artists get
    SVG ids ``{figure_id}-m{i}-{k}`` and the figure has no legend (the page has its own)."""
    methods = sorted(curves["method"].unique())
    bands = {m: seed_band(curves[curves["method"] == m], x, column) for m in methods}
    horizon = common_horizon(curves, x) if x == "time" else None
    xlabel = {"time": "virtual time (s)", "arrivals": "arrivals"}.get(x, x)
    if not small_multiples:
        fig = Figure(figsize=size, dpi=120, layout="constrained")
        ax = fig.add_subplot()
        for i, m in enumerate(methods):
            grid, mean, lo, hi, n = bands[m]
            for k, artist in enumerate(_draw_method(ax, grid, mean, lo, hi, n, colors[m], f"{wrapped(m)} (n={n})")):
                if figure_id:
                    artist.set_gid(f"{figure_id}-m{i}-{k}")
        if horizon is not None:
            _horizon_line(ax, horizon, label=True)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if not figure_id:            # the HTML page has its own legend with toggles
            ax.legend(fontsize=8, loc="lower right")
        fig.suptitle(title, fontsize=10)
        return fig
    # panels in leaderboard order (best final value first): the story reads left to right
    methods = sorted(methods, key=lambda m: -bands[m][1][-1])
    cols = 3
    rows = math.ceil(len(methods) / cols)
    fig = Figure(figsize=(10, 2.5 * rows + 0.6), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False).ravel()
    for ax, m in zip(axes, methods):
        for other in methods:
            if other != m:
                ax.plot(bands[other][0], bands[other][1], color=MUTED, lw=0.8)
        grid, mean, lo, hi, n = bands[m]
        _draw_method(ax, grid, mean, lo, hi, n, colors[m], lw=1.8)
        if horizon is not None:
            _horizon_line(ax, horizon, label=False)
        ax.set_title(f"{wrapped(m, 36)} (n={n}): {mean[-1]:.3f} at {grid[-1]:.0f}", fontsize=9,
                     color=_darker(colors[m]))
        ax.grid(alpha=0.3)
    for ax in axes[len(methods):]:
        ax.set_visible(False)
    for ax in axes[max(0, len(methods) - cols):len(methods)]:   # the lowest panel of each column has the axis labels
        ax.tick_params(labelbottom=True)
    fig.supxlabel(xlabel, fontsize=9)
    fig.supylabel(ylabel, fontsize=9)
    fig.suptitle(title + (" — dotted: common horizon" if horizon is not None else ""), fontsize=10)
    return fig


def staleness_figure(staleness: dict[str, np.ndarray], colors: dict[str, str], title: str,
                     figure_id: str = "", size: tuple[float, float] = PAGE_SIZE) -> Figure:
    """Share of arrivals at each staleness (server versions between dispatch and arrival),
    one step line per method: methods that update on every arrival see the schedule's
    staleness itself, buffered ones count fewer versions on the same schedule. The axis
    ends at the largest 99th percentile (a heavy tail would squash the rest); the
    title gives the maximum."""
    fig = Figure(figsize=size, dpi=120, layout="constrained")
    ax = fig.add_subplot()
    top = max(int(np.ceil(np.percentile(v, 99))) for v in staleness.values())
    largest = max(int(v.max()) for v in staleness.values())
    edges = np.arange(top + 2) - 0.5
    for i, (m, values) in enumerate(sorted(staleness.items())):
        share = np.histogram(values, bins=edges)[0] / len(values)
        line, = ax.step(np.arange(top + 1), share, where="mid", color=colors[m], lw=1.4, label=m)
        if figure_id:
            line.set_gid(f"{figure_id}-m{i}-0")
    # on two lines: one would run past a phone-width figure
    ax.set_xlabel("staleness τ (server versions)" + (f"\naxis ends at the 99th percentile; max {largest}"
                                                     if largest > top else ""))
    ax.set_ylabel("share of arrivals")
    ax.set_ylim(bottom=0)   # shares from zero: an even spread must not read as a zoomed-in wiggle
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))   # staleness counts versions: no 0.5 ticks
    ax.grid(alpha=0.3)
    if not figure_id:
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def server_cost_figure(cost: dict[str, list[float]], colors: dict[str, str], title: str,
                       width: float = PAGE_SIZE[0]) -> Figure:
    """Server milliseconds per arrival (wall clock of ``receive``): a bar per method at the
    mean over seeds, a dot per seed."""
    methods = sorted(cost, key=lambda m: np.mean(cost[m]))
    lines = sum(wrapped(m, 24).count("\n") + 1 for m in methods)   # room for labels over several lines
    fig = Figure(figsize=(width, 0.4 * len(methods) + 0.15 * (lines - len(methods)) + 1.1), dpi=120,
                 layout="constrained")
    ax = fig.add_subplot()
    for y, m in enumerate(methods):
        ax.barh(y, np.mean(cost[m]), color=colors[m], alpha=0.8)
        ax.plot(cost[m], [y] * len(cost[m]), "o", color="black", ms=3)
        ax.annotate(f"{np.mean(cost[m]):.2f}", (np.mean(cost[m]), y), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_yticks(range(len(methods)), [wrapped(m, 24) for m in methods], fontsize=8)
    # room right of the longest bar (or slowest seed) for its value label
    ax.set_xlim(0, 1.18 * max(max(v) for v in cost.values()) or 1.0)   # (all zero: a unit axis, not an empty one)
    ax.set_xlabel("server ms per arrival (wall clock)")
    ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=10)
    return fig


VERDICT_COLORS = {"holds": "#2e7d32", "does not hold": "#c62828"}   # inconclusive: grey
# metric kind -> (axis label, transform of the stored effect for the axis, the line of no effect)
EFFECT_AXES = {"accuracy": ("claimed arm − other, accuracy points", lambda e: 100 * e, 0.0),
               "time": ("claimed arm's speed-up to the target (×)", np.exp, 1.0),
               "error": ("other's error − claimed arm's (relative units)", lambda e: e, 0.0)}


def claims_figure(rows: pd.DataFrame, title: str, width: float = PNG_SIZE[0]) -> Figure:
    """Each comparison of a claims table: the mean paired effect with its 95 % interval
    (green: holds, red: does not hold, grey: inconclusive) over a dot per paired unit, one
    panel per kind of metric (``rows["kind"]``: accuracy, time or error, as the claims
    table records it), the line of no effect drawn; the paper's side is the right."""
    kinds = [k for k in EFFECT_AXES if (rows["kind"] == k).any()]
    heights = [max(1, int((rows["kind"] == k).sum())) for k in kinds]
    fig = Figure(figsize=(width, 0.42 * sum(heights) + 1.0 * len(kinds) + 0.6), dpi=120, layout="constrained")
    axes = fig.subplots(len(kinds), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, kind in zip(axes, kinds):
        label, transform, none = EFFECT_AXES[kind]
        sub = rows[rows["kind"] == kind].reset_index(drop=True)
        for y, r in sub.iterrows():
            points = transform(np.array([float(v) for v in str(r["effects"]).split()] or [np.nan]))
            ax.plot(points, np.full(len(points), y) + 0.18, ".", color="#9e9e9e", ms=4)
            color = VERDICT_COLORS.get(r["verdict"], "#616161")
            lo, mid, hi = transform(np.array([r["low"], r["effect"], r["high"]], dtype=float))
            ax.errorbar([mid], [y], xerr=[[mid - lo], [hi - mid]], fmt="o", color=color, capsize=3, ms=5)
        ax.axvline(none, color="black", lw=0.8)
        ax.set_yticks(range(len(sub)), [wrapped(f"{c} · vs {a}", 40) for c, a in zip(sub["claim"], sub["against"])],
                      fontsize=7)
        ax.set_ylim(len(sub) - 0.5, -0.5)
        ax.set_xlabel(label, fontsize=8)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=10)
    return fig


def _plain_log_axis(axis) -> None:
    """Log-scale ticks at 1, 2 and 5 per decade, written as plain numbers: matplotlib's
    default 2×10⁻¹ labels run into each other on a decade-wide axis."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def sensitivity_figure(trials: dict[str, pd.DataFrame], log_scale: dict[str, set[str]], best: dict[str, dict],
                       colors: dict[str, str], ylabel: str, title: str, cols: int = 3,
                       width: float | None = None) -> Figure | None:
    """Tuning sensitivity: one panel per method and tuned hyperparameter, the value of every
    trial (a dot) against that hyperparameter, the tuned (best) trial ringed. ``trials``
    maps a method to its trials (a column per hyperparameter and ``value``); ``log_scale``
    names the hyperparameters sampled on a log scale; ``best`` holds each method's tuned
    values. ``cols`` panels per row, ``width`` inches in all (default 3.4 per panel).
    None when no trial has a finite value."""
    panels = [(m, p) for m, frame in sorted(trials.items()) for p in frame.columns if p != "value"
              if np.isfinite(frame["value"]).any()]
    if not panels:
        return None
    cols = min(cols, len(panels))
    rows = math.ceil(len(panels) / cols)
    width = width or 3.4 * cols
    fig = Figure(figsize=(width, 2.3 * rows * min(1.0, width / cols / 3.4) + 0.6), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for ax, (m, p) in zip(axes, panels):
        frame = trials[m][np.isfinite(trials[m]["value"])]
        ax.plot(frame[p], frame["value"], "o", color=colors.get(m, "#1f77b4"), ms=5, alpha=0.85, mec="#333", mew=0.4)
        chosen = np.ones(len(frame), bool)
        for name, value in best.get(m, {}).items():
            chosen &= np.isclose(frame[name].astype(float), float(value)) if name in frame else False
        if chosen.any():
            ax.plot(frame.loc[chosen, p], frame.loc[chosen, "value"], "o", mfc="none", mec="black", ms=11, mew=1.5)
        if p in log_scale.get(m, set()):
            ax.set_xscale("log")
            _plain_log_axis(ax.xaxis)
        left_out = len(trials[m]) - len(frame)
        # titles in black: a pale method colour would be hard to read
        ax.set_title(f"{m}: {p}" + (f" ({left_out} trial(s) never reached the target)" if left_out else ""),
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.supylabel(ylabel, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def save_png(fig: Figure, path) -> None:
    """Write atomically: a reader never sees half a PNG."""
    write_with(path, fig.savefig)


def svg_markup(fig: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element to inline in HTML: text stays text, the ids
    matplotlib makes for clip paths are salted per figure (unique on one page, and the
    same on every rebuild), no date, and no fixed size (the page scales it, up to about
    its own size)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    # matplotlib's RDF block names Dublin Core schema URLs: nothing is fetched, but a page
    # that promises no outside address should not contain any
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)
    # clip-path ids: matplotlib hashes the clip path's repr, which in older releases holds
    # object addresses, so the same figure drew new ids on every save; numbered in order
    # of appearance under the salt instead, they are the same on every rebuild
    clips = dict.fromkeys(re.findall(r'<clipPath id="([^"]+)"', text))
    for n, old_id in enumerate(clips):
        text = text.replace(f'id="{old_id}"', f'id="{salt}-clip{n}"').replace(f"url(#{old_id})", f"url(#{salt}-clip{n})")
    head, rest = text.split(">", 1)
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    # it shrinks with the screen, but never grows far past its own size (big text otherwise)
    widest = round(fig.get_figwidth() * 120)
    return f'{head} preserveAspectRatio="xMidYMid meet" role="img" style="max-width:{widest}px">{rest}'
