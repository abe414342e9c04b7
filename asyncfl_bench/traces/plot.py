"""PNG plots of a trace's job durations and the staleness its schedule implies."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from asyncfl_bench.atomic import write_with
from asyncfl_bench.traces.schedule import Schedule
from asyncfl_bench.traces.summary import schedule_frame


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt
    write_with(path, fig.savefig)
    plt.close(fig)
    return path


def _finish(fig, ax, ylabel: str, title: str, path: Path) -> Path:
    """The histograms' common labels, legend and grid; saved atomically."""
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_trace(schedule: Schedule, title: str, out_dir: Path, stem: str) -> list[Path]:
    """Duration and staleness histograms as PNGs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = schedule_frame(schedule)
    durations = frame["arrival_time"] - frame["dispatch_time"]
    tau = frame["staleness"]
    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
    top = np.percentile(durations, 99.5)
    ax.hist(durations.clip(upper=top), bins=60, color="tab:blue", alpha=0.85)
    ax.axvline(durations.mean(), color="k", ls="--", lw=1, label=f"mean {durations.mean():.3g} s")
    ax.set_xlabel("job duration (s)" + (f", clipped at p99.5 = {top:.3g}" if durations.max() > top else ""))
    written.append(_finish(fig, ax, "jobs", f"{title}: job durations ({len(frame)} jobs)",
                           out_dir / f"{stem}-durations.png"))

    fig, ax = plt.subplots(figsize=(6.4, 4), dpi=110)
    width = max(1, int(np.ceil((tau.max() + 1) / 80)))       # whole-number bins: no aliasing comb
    ax.hist(tau, bins=np.arange(-0.5, tau.max() + width + 0.5, width), color="tab:orange", alpha=0.85)
    if tau.max() > 4 * np.percentile(tau, 95):
        ax.set_yscale("log")                                   # a heavy tail stays visible
    for value, style, name in ((tau.mean(), "--", "mean"), (np.percentile(tau, 95), ":", "p95")):
        ax.axvline(value, color="k", ls=style, lw=1, label=f"{name} {value:.1f}")
    ax.set_xlabel("staleness (server updates between dispatch and arrival, one update per arrival)")
    written.append(_finish(fig, ax, "arrivals", f"{title}: staleness", out_dir / f"{stem}-staleness.png"))
    return written
