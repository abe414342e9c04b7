"""One self-contained HTML page per results folder (``report/report.html``).

Everything is inline, so the page works offline and as a single attachment: the
figures are matplotlib SVG (vector, so they stay sharp at phone width; text stays
text), the style sheet and ~40 lines of plain JavaScript (sortable tables, methods
toggled on and off, a method highlighted while the pointer is on its legend entry) are
in the page, and a Content-Security-Policy forbids every fetch. A
plotting library's JavaScript would add megabytes to every page for interactions
that ids on the SVG artists give us already.

Per task and preset: the leaderboard (sortable; default or tuned hyperparameters,
from the ``tuning`` record ``run --tuned`` puts in a run's config; seeds; diverged
runs), accuracy against virtual time and against arrivals (mean and min–max band
over seeds, methods toggle on and off), the staleness histogram, per-class accuracy
(and the slow classes' accuracy on intertwined traces), server cost per arrival,
the tuning when ``tune`` wrote its file ``tuned/<task>-<preset>.json`` (each
method's tuned values and budget, and a sensitivity plot per method from the tune's
study database, see ``results.sensitivity``), the machines and versions the runs
ran on, and every run with its config. ``claims/*.csv`` in the results folder, when
present, are shown as tables at the end.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from asyncfl_bench.results import columns, plots
from asyncfl_bench.results.claim_tables import claim_tables, plottable
from asyncfl_bench.results.sensitivity import read_tuned, sensitivity
from asyncfl_bench.results.store import read_json
from asyncfl_bench.results.tracker import read_arrivals

STYLE = """
:root{--fg:#1d1d1f;--muted:#666;--line:#ddd;--bg:#fff;--head:#f4f5f7;--bad:#fde8e8;--accent:#1f5fbf}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;max-width:1180px;padding:0 16px 48px}
h1{font-size:1.5em;margin:20px 0 4px}h2{font-size:1.25em;margin:36px 0 8px;padding-top:8px;border-top:2px solid var(--line)}
h3{font-size:1.05em;margin:24px 0 6px}h4.ranking{font-size:.95em;margin:14px 0 4px}
p.note,figcaption,.legend,.muted{color:var(--muted);font-size:.88em}
nav a{margin-right:12px}a{color:var(--accent)}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;font-size:.88em;width:100%}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{background:var(--head);position:sticky;top:0}
th:first-child,td:first-child{text-align:left;position:sticky;left:0;background:var(--bg)}
th:first-child{background:var(--head)}
td:first-child{white-space:normal;overflow-wrap:anywhere;min-width:min(40vw,17em);max-width:min(42vw,24em)}
p,figcaption,h4,.legend .name{overflow-wrap:anywhere}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th::after{content:" ↕";color:#aaa;font-size:.8em}
th[aria-sort=ascending]::after{content:" ▲";color:var(--fg)}th[aria-sort=descending]::after{content:" ▼";color:var(--fg)}
tr.diverged td{background:var(--bad)}
th.config,td.config{text-align:left}
.badge{display:inline-block;font-size:.75em;padding:0 6px;border-radius:8px;margin-left:6px;border:1px solid #bbb;color:#555}
.badge.tuned{border-color:#2c7;color:#175}.badge.ref{border-color:#88a;color:#446}
figure{margin:8px 0 0}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,520px),1fr));gap:0 32px}
figure svg{width:100%;height:auto;display:block;max-width:720px}
.legend label{display:inline-flex;align-items:center;margin:2px 12px 2px 0;cursor:pointer;color:var(--fg);
max-width:100%}.legend .name{min-width:0}.legend input,.swatch{flex:none}
.legend input{margin:0 4px 0 0}
.swatch{display:inline-block;width:14px;height:4px;border-radius:2px;margin-right:5px}
.legend button{font:inherit;font-size:.9em;margin-right:6px}
details pre{max-height:360px;overflow:auto;background:var(--head);padding:8px;font-size:.8em}
@media (max-width:600px){body{font-size:14px;padding:0 10px 32px}th,td{padding:4px 6px}}
"""

SCRIPT = """
function sortKey(td){const v=(td.dataset.sort??td.textContent).trim();const n=parseFloat(v);return isNaN(n)?null:n;}
function sortTable(table,i,th){
  const up=th.getAttribute('aria-sort')!=='ascending';
  table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));
  th.setAttribute('aria-sort',up?'ascending':'descending');
  const body=table.tBodies[0],rows=[...body.rows];
  rows.sort((a,b)=>{const x=sortKey(a.cells[i]),y=sortKey(b.cells[i]);
    if(x===null||y===null){if(x!==y)return x===null?1:-1;   // cells without a number go last
      const c=a.cells[i].textContent.localeCompare(b.cells[i].textContent);return up?c:-c;}
    return up?x-y:y-x;});
  rows.forEach(r=>body.appendChild(r));
}
document.querySelectorAll('table.sortable').forEach(table=>{
  table.querySelectorAll('thead th').forEach((th,i)=>{
    th.tabIndex=0;const go=()=>sortTable(table,i,th);
    th.addEventListener('click',go);
    th.addEventListener('keydown',e=>{if(e.key==='Enter'||e.key===' '){e.preventDefault();go();}});
  });
});
function showMethod(fig,m,on){
  document.querySelectorAll('#'+fig+' [id^="'+fig+'-m'+m+'-"]').forEach(el=>{el.style.display=on?'':'none';});
}
function highlight(fig,m){   // m === null: every method at full strength again
  document.querySelectorAll('#'+fig+' [id^="'+fig+'-m"]').forEach(el=>{
    el.style.opacity=(m===null||el.id.startsWith(fig+'-m'+m+'-'))?'':'0.12';});
}
document.querySelectorAll('.legend').forEach(legend=>{
  const fig=legend.dataset.figure,boxes=[...legend.querySelectorAll('input')];
  boxes.forEach(b=>b.addEventListener('change',()=>showMethod(fig,b.dataset.method,b.checked)));
  legend.querySelectorAll('label').forEach(l=>{const m=l.querySelector('input').dataset.method;
    l.addEventListener('mouseenter',()=>highlight(fig,m));l.addEventListener('mouseleave',()=>highlight(fig,null));
    l.addEventListener('focusin',()=>highlight(fig,m));l.addEventListener('focusout',()=>highlight(fig,null));});
  legend.querySelectorAll('button').forEach(btn=>btn.addEventListener('click',()=>{
    const on=btn.dataset.all==='1';boxes.forEach(b=>{b.checked=on;showMethod(fig,b.dataset.method,on);});}));
});
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"


def _e(value) -> str:
    return html.escape(str(value))


def _label(method: str) -> str:
    """A method label as HTML that may break after its commas and opening bracket (a
    variant label has no spaces to break at); its text is unchanged."""
    return _e(method).replace(",", ",<wbr>").replace("[", "[<wbr>")


def _slug(*parts: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else "_" for ch in str(p)) for p in parts)


class Page:
    """Collects the sections; numbers the figures so their SVG ids are unique."""

    def __init__(self):
        self.figures = 0

    def figure(self, fig, plot: str, caption: str, methods: list[str] | None = None,
               colors: dict[str, str] | None = None) -> str:
        """An inline SVG figure; with ``methods``, a legend whose boxes toggle each method
        (the figure's artists must carry ids ``<figure id>-m<index>-<k>``)."""
        self.figures += 1
        fid = f"fig{self.figures}"
        legend = ""
        if methods:
            boxes = "".join(
                f'<label><input type="checkbox" checked data-method="{i}">'
                f'<span class="swatch" style="background:{colors[m]}"></span><span class="name">{_label(m)}</span></label>'
                for i, m in enumerate(methods))
            legend = (f'<div class="legend" data-figure="{fid}"><button type="button" data-all="1">all</button>'
                      f'<button type="button" data-all="0">none</button> {boxes}</div>')
        return (f'<figure id="{fid}" data-plot="{_e(plot)}">{legend}{plots.svg_markup(fig, fid)}'
                f'<figcaption>{caption}</figcaption></figure>')

    def figure_id(self) -> str:
        """The id the next ``figure`` call will give (for the artists' SVG ids)."""
        return f"fig{self.figures + 1}"


def _table(frame: pd.DataFrame, css: str = "sortable", labelled: bool = False, row_class=None, cell=None) -> str:
    """A table; ``labelled``: leaderboard columns, shown by label with their meaning as a tooltip."""
    head = "".join(f'<th scope="col" title="{_e(columns.meaning(c) if labelled else "")}">'
                   f'{_e(columns.label(c) if labelled else c)}</th>' for c in frame.columns)
    rows = []
    for i, r in enumerate(frame.itertuples(index=False)):
        cls = row_class(i) if row_class else ""
        cells = "".join(cell(frame.columns[j], v, i) if cell else f"<td>{_e(v)}</td>" for j, v in enumerate(r))
        rows.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return (f'<div class="scroll"><table class="{css}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _leaderboard(board: pd.DataFrame, reference: str) -> str:
    """One sortable table per ranking: default hyperparameters, then each tuning budget, so
    sorting never mixes them."""
    parts = []
    for _, _, hyper, rows in columns.ranking_groups(board):
        heading = ("On default hyperparameters" if hyper == columns.DEFAULT
                   else f"On tuned hyperparameters: {hyper.removeprefix('tuned').strip(' ()')}")
        parts += [f'<h4 class="ranking">{_e(heading)}</h4>', _ranking_table(rows, reference)]
    return "".join(parts)


def _ranking_table(board: pd.DataFrame, reference: str) -> str:
    marks = board["hyperparameters"].reset_index(drop=True)
    # the ranking's heading says default or tuned, the badge gives the budget
    frame = board.drop(columns=["task", "preset", "hyperparameters"]).reset_index(drop=True)
    frame = frame[columns.by_importance(frame.columns)]

    def cell(col, value, i):
        if col == "method":
            # marked where it matters: on a phone the method column is all that stays in view
            tuned = str(marks[i]).startswith("tuned")
            badges = f'<span class="badge tuned" title="{_e(marks[i])}">tuned</span>' if tuned else ""
            if value in (reference, f"{reference}[tuned]"):
                badges += '<span class="badge ref">reference</span>'
            return f'<td data-sort="{_e(value)}">{_label(value)}{badges}</td>'
        return f"<td>{_e(value)}</td>"

    diverged = frame["diverged"].astype(str) != "0"
    return _table(frame, "sortable leaderboard", True, lambda i: "diverged" if diverged[i] else "", cell)


def _final_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """The last evaluation of every run."""
    return curves.sort_values("arrivals").groupby(["method", "seed"], as_index=False).tail(1)


def _per_class(curves: pd.DataFrame, slow: list[str]) -> str:
    cols = sorted((c for c in curves.columns if c.startswith("class_acc_") and curves[c].notna().any()),
                  key=lambda c: int(c.removeprefix("class_acc_")) if c.removeprefix("class_acc_").isdigit() else c)
    if not cols:
        return ""
    means = _final_rows(curves).groupby("method")[cols].mean()
    frame = means.reset_index().rename(columns={c: c.removeprefix("class_acc_") + (" (slow)" if c.removeprefix(
        "class_acc_") in slow else "") for c in cols})

    def cell(col, value, i):
        if col == "method":
            return f"<td>{_label(value)}</td>"
        if pd.isna(value):                              # a class no run of this method evaluated
            return "<td>—</td>"
        shade = int(255 - 120 * float(value))          # white at 0, green at 1
        return f'<td style="background:rgb({shade},{min(255, shade + 60)},{shade})">{float(value):.3f}</td>'

    return (_table(frame, "sortable per-class", cell=cell) +
            '<p class="note">Final test accuracy per class, mean over seeds.</p>')


def _staleness(runs: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per method: the staleness of every arrival, pooled over its seeds."""
    found = {}
    for method, g in runs.groupby("method"):
        parts = [a["staleness"].to_numpy() for a in map(read_arrivals, g["folder"]) if a is not None and len(a)]
        if parts:
            found[method] = np.concatenate(parts)
    return found


def _or_dash(value) -> str:
    return "—" if value is None or pd.isna(value) else str(value)


def _identical(staleness: dict[str, np.ndarray]) -> list[list[str]]:
    """Groups of two or more methods whose arrivals had exactly the same staleness: their
    lines coincide, and only the one drawn last would be seen without saying so."""
    groups: dict[bytes, list[str]] = {}
    for m, values in sorted(staleness.items()):
        groups.setdefault(np.asarray(values, dtype=np.int64).tobytes(), []).append(m)
    return [g for g in groups.values() if len(g) > 1]


def _runs_table(runs: pd.DataFrame, out: Path) -> str:
    """Every run with its headline numbers, a link to its config.json (relative, so the
    folder can be moved or zipped whole) and the config itself inline."""
    rows = []
    for r in runs.sort_values(["method", "seed"]).itertuples(index=False):
        folder = Path(r.folder)
        link = quote(Path(os.path.relpath(folder / "config.json", out)).as_posix())
        config = json.dumps(read_json(folder / "config.json"), indent=2, sort_keys=True)
        ttt = "—" if pd.isna(r.time_to_target) else f"{r.time_to_target:.1f}"
        diverged = f"at t={r.diverged_at:.1f}" if r.diverged else "no"
        hyper = "tuned" if getattr(r, "tuned", False) else "default"
        rows.append(
            f'<tr class="{"diverged" if r.diverged else ""}"><td>{_label(r.method)}</td><td>{r.seed}</td>'
            f"<td>{r.final_accuracy:.3f}</td><td>{r.best_accuracy:.3f}</td><td>{ttt}</td><td>{diverged}</td>"
            f"<td>{hyper}</td><td>{_e(_or_dash(getattr(r, 'schedule_hash', None)))}</td>"
            f'<td class="config"><a href="{link}">{_e(folder.name)}/config.json</a>'
            f"<details><summary>show</summary><pre>{_e(config)}</pre></details></td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("method", "seed", "final acc", "best acc", "time to target",
                                             "diverged", "hyperparameters", "schedule"))
    head += '<th class="config">config</th>'
    return (f'<div class="scroll"><table class="sortable runs"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


MACHINE_FIELDS = {"cpu": "CPU", "cpus": "cores", "threads": "torch threads", "device": "device",
                  "accelerator": "accelerator", "os": "OS", "python": "Python", "torch": "torch", "numpy": "NumPy",
                  "asyncfl_bench": "asyncfl-bench"}


def _machines(runs: pd.DataFrame) -> str:
    """Where the runs ran, one row per distinct machine and software (summary.json's
    ``machine``, torch threads, and the config's device): wall times and server cost
    are comparable only within a row."""
    groups: dict[str, list[str]] = {}
    for r in runs.sort_values(["method", "seed"]).itertuples(index=False):
        folder = Path(r.folder)
        summary, config = read_json(folder / "summary.json"), read_json(folder / "config.json")
        machine = summary.get("machine") if isinstance(summary.get("machine"), dict) else {}
        record = {"threads": summary.get("threads"), "device": config.get("device"), **machine}
        key = json.dumps({k: record.get(k) for k in MACHINE_FIELDS} if machine else None, sort_keys=True)
        groups.setdefault(key, []).append(f"{r.method} seed {r.seed}")
    rows = []
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        record = json.loads(key)
        cells = ([_or_dash(record.get(k)) for k in MACHINE_FIELDS] if record else
                 ["not recorded (results from an asyncfl-bench that predates it)"] + [""] * (len(MACHINE_FIELDS) - 1))
        rows.append({"runs": len(members), **dict(zip(MACHINE_FIELDS.values(), cells)),
                     "which": "all" if len(groups) == 1 else
                     ", ".join(members[:6]) + (f" and {len(members) - 6} more" if len(members) > 6 else "")})
    return (_table(pd.DataFrame(rows), "sortable machines") +
            '<p class="note">Virtual time and accuracy do not depend on the machine; wall times and the server '
            "cost per arrival do, so compare those within one row only.</p>")


def _built_with() -> str:
    """The software that built this page (the runs' own is under “Machine and versions”);
    versions from package metadata, so the report still never imports torch."""
    import platform
    from importlib import metadata

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    names = ("asyncfl-bench", "numpy", "pandas", "matplotlib", "scipy", "optuna", "torch")
    return (f"Built with Python {platform.python_version()} on {_e(platform.platform())}: "
            + ", ".join(f"{n} {_e(version(n))}" for n in names) + ".")


def _section(page: Page, results: Path, task: str, preset: str, runs: pd.DataFrame, curves: pd.DataFrame,
             board: pd.DataFrame, out: Path, reference: str) -> str:
    methods = sorted(curves["method"].unique())
    colors = plots.method_colors(methods)
    n_seeds = sorted(runs.groupby("method")["seed"].nunique().unique())
    parts = [f'<h2 id="{_slug(task, preset)}">{_e(task)} · preset {_e(preset)}</h2>',
             (f'<p class="note">{len(runs)} runs, {len(methods)} methods, seeds per method: '
              f'{"/".join(map(str, n_seeds))}. Bands: min–max over seeds; n = number of seeds.</p>')]
    diverged = runs[runs["diverged"].astype(bool)]
    if len(diverged):
        listed = ", ".join(f"{m} seed {s} at t={t:.1f}" for m, s, t in
                           diverged[["method", "seed", "diverged_at"]].itertuples(index=False))
        parts.append(f'<p class="note"><strong>Diverged runs</strong> (kept in every statistic): {_e(listed)}</p>')
    parts += ["<h3>Leaderboard</h3>", _leaderboard(board, reference),
              ('<p class="note">Click a column to sort; hover a heading for its meaning. '
               'Hyperparameters: <em>default</em> (the method\'s published defaults) or <em>tuned</em> '
               '(<code>run --tuned</code>: values chosen by <code>tune</code> on validation; hover the badge '
               'for the budget).</p>')]
    plotted = []   # (heading, figure): laid out side by side where the screen is wide enough
    fig = plots.curve_figure(curves, "time", "accuracy", "test accuracy",
                             f"{task} · {preset}: accuracy against virtual time", colors,
                             figure_id=page.figure_id(), size=plots.PAGE_SIZE)
    plotted.append(("Accuracy against virtual time", page.figure(
        fig, "accuracy-time", "Mean over seeds, band min–max; a dot marks where each method's run ends (a seed that "
        "ends sooner holds its final accuracy); "
        "dotted: the common horizon of “acc over time”. Point at a method in the legend to highlight it, "
        "untick it to hide it.", methods, colors)))
    fig = plots.curve_figure(curves, "arrivals", "accuracy", "test accuracy",
                             f"{task} · {preset}: accuracy against arrivals", colors,
                             figure_id=page.figure_id(), size=plots.PAGE_SIZE)
    plotted.append(("Accuracy against arrivals", page.figure(
        fig, "accuracy-arrivals", "The same runs per client update received: what each method makes of "
        "the same work.", methods, colors)))
    synchronous = runs["synchronous"].astype(bool) if "synchronous" in runs else pd.Series(False, index=runs.index)
    staleness = _staleness(runs[~synchronous])
    if staleness:
        fig = plots.staleness_figure(staleness, colors, f"{task} · {preset}: staleness of arrivals (all seeds)",
                                     figure_id=page.figure_id())
        rounds = sorted(runs.loc[synchronous, "method"].unique())
        same = _identical(staleness)
        plotted.append(("Staleness", page.figure(
            fig, "staleness", "Staleness τ = server version at arrival − at dispatch, on the schedule the "
            "asynchronous methods share (one per seed): methods that update the model on every arrival see "
            "its staleness directly, buffered ones count fewer versions."
            + (f" Left out: {_e(', '.join(rounds))} (synchronous rounds, τ = 0)." if rounds else "")
            + "".join(f" One line, drawn over each other: {_e(', '.join(g))} (the same staleness at every "
                      "arrival)." for g in same),
            sorted(staleness), colors)))
    slow = str(runs["slow_classes"].dropna().iloc[0]).split("/") if "slow_classes" in runs and \
        runs["slow_classes"].notna().any() and runs["slow_classes"].dropna().nunique() == 1 else []
    if slow and all(f"class_acc_{c}" in curves for c in slow):
        cols = [f"class_acc_{c}" for c in slow]
        sub = curves.assign(slow_class_accuracy=curves[cols].mean(axis=1))
        fig = plots.curve_figure(sub, "time", "slow_class_accuracy", f"accuracy on class(es) {'/'.join(slow)}",
                                 f"{task} · {preset}: slow-class accuracy", colors,
                                 figure_id=page.figure_id(), size=plots.PAGE_SIZE)
        plotted.append(("Slow-class accuracy", page.figure(
            fig, "slow-class", "Accuracy on the classes the intertwined trace delays.", methods, colors)))
    if "server_ms_per_arrival" in runs:
        cost = {m: g["server_ms_per_arrival"].dropna().tolist() for m, g in runs.groupby("method")}
        cost = {m: v for m, v in cost.items() if v}
        if cost:
            fig = plots.server_cost_figure(cost, colors, f"{task} · {preset}: server cost per arrival")
            plotted.append(("Server cost per arrival", page.figure(
                fig, "server-cost", "Wall-clock milliseconds the server spends on one arriving update "
                "(bar: mean over seeds; dots: seeds). Depends on the machine: see “Machine and versions”.")))
    parts.append('<div class="plots">' + "".join(f"<section><h3>{h}</h3>{f}</section>" for h, f in plotted)
                 + "</div>")
    per_class = _per_class(curves, slow)
    if per_class:
        parts += ["<h3>Per-class accuracy</h3>", per_class]
    parts.append(_tuning(page, results, task, preset, colors))
    parts += ["<h3>Machine and versions</h3>", _machines(runs)]
    parts += ["<h3>Runs</h3>", _runs_table(runs, out)]
    return "\n".join(parts)


def _claims(page: Page, results: Path) -> str:
    tables = claim_tables(results)
    if not tables:
        return ""
    parts = ['<h2 id="claims">Claims</h2>',
             '<p class="note">From <code>asyncfl-bench claims run</code>: per comparison the paired effect over '
             "seeds with its 95 % interval; a claim holds when the interval lies above zero, does not hold "
             "when it lies below, and is inconclusive otherwise.</p>"]
    for scale, frame, problem, raw in tables:
        parts += [f"<h3>scale {_e(scale)}</h3>", f'<p class="note">{_e(problem)}</p>' if problem else _table(frame)]
        if plottable(raw):
            fig = plots.claims_figure(raw, f"claims at scale {scale}", width=plots.PAGE_SIZE[0] * 1.4)
            parts.append(page.figure(fig, "claims", "Each comparison's mean effect and 95 % interval (green: "
                                     "holds, red: does not hold, grey: inconclusive); grey dots: the paired units. "
                                     "The paper's side is right of the black line."))
    return "\n".join(parts)


def _tuning(page: Page, results: Path, task: str, preset: str, colors: dict[str, str]) -> str:
    """The tuned-values file of this task/preset (``tune``'s default place): each method's
    tuned values with the budget, and the sensitivity of the objective to each value."""
    path = Path(results) / "tuned" / f"{task}-{preset}.json"
    if not path.is_file():
        return ""
    tuned = read_tuned(results, task, preset)
    # an unreadable file is `tune`'s to fix (rerunning it rewrites the file): say so, report the rest
    if tuned is None:
        return (f'<h3>Tuning</h3><p class="note">{_e(path.name)} is not a readable tuned-values file, so it is '
                f"left out; rerunning <code>asyncfl-bench tune</code> rewrites it.</p>")
    budget = tuned.get("budget", {})
    objective = f"{tuned['objective']} on validation"
    parts = ["<h3>Tuning</h3>",
             (f'<p class="note">From <code>{_e(path.name)}</code>: {budget.get("trials", "?")} trials per method '
              f'× {budget.get("runs_per_trial", "?")} run(s) per trial (tuning seeds '
              f'{_e(", ".join(map(str, tuned["tuning_seeds"])))}), {budget.get("sampler", "")} sampler, '
              f'objective {_e(objective)}. Runs marked <em>tuned</em> above use these values.</p>')]
    table = pd.DataFrame([{"method": m, "tuned values": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else
                                                                   f"{k}={v}" for k, v in e["params"].items()),
                           tuned["objective"]: "—" if e.get("value") is None else f"{e['value']:.4g}",
                           "best trial": e.get("best_trial", "—")} for m, e in sorted(tuned["methods"].items())])
    parts.append(_table(table))
    figures, problem = sensitivity(results, tuned, colors, per_method=True)
    if figures:
        # one figure per method, laid out like the other plots: readable at phone width
        parts += ['<div class="plots">', *(f"<section>{page.figure(fig, 'tuning-sensitivity', _e(caption))}</section>"
                                            for fig, caption in figures), "</div>",
                  ('<p class="note">One dot per trial (its value: the objective averaged over the tuning seeds); '
                   "ringed: the tuned values. A flat cloud: the method barely depends on that value here.</p>")]
    else:
        parts.append(f'<p class="note">No sensitivity plot: {_e(problem)}.</p>')
    return "\n".join(parts)


def render(results: Path, out: Path, runs: pd.DataFrame, curves: pd.DataFrame, board: pd.DataFrame,
           reference: str, warnings: list[str]) -> str:
    """The whole page as one string."""
    results, out = Path(results), Path(out)
    page = Page()
    groups = sorted(runs[["task", "preset"]].drop_duplicates().itertuples(index=False, name=None))
    sections = []
    for task, preset in groups:
        pick = lambda f, t=task, p=preset: f[(f["task"] == t) & (f["preset"] == p)]
        sections.append(_section(page, results, task, preset, pick(runs), pick(curves), pick(board), out, reference))
    extra = {k: s for k, s in {"claims": _claims(page, results)}.items() if s}
    nav = "".join(f'<a href="#{_slug(t, p)}">{_e(t)} · {_e(p)}</a>' for t, p in groups)
    nav += "".join(f'<a href="#{k}">{k}</a>' for k in extra)
    notes = "".join(f'<p class="note"><strong>warning:</strong> {_e(w)}</p>' for w in warnings)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>asyncfl-bench report · {_e(results.name)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>asyncfl-bench report</h1>"
            f'<p class="muted">{len(runs)} finished runs in <code>{_e(results)}</code>. Leaderboard files: '
            f"leaderboard.md, leaderboard.csv next to this page. {_built_with()}</p><nav>{nav}</nav>{notes}</header>"
            f'<main>{"".join(sections)}{"".join(extra.values())}</main><script>{SCRIPT}</script></body></html>\n')
