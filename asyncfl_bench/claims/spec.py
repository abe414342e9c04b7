"""A claim, read from its TOML file in ``catalog/`` and checked before anything runs.

Fields (every claim file has them all but ``notes``, ``kind``, ``measurement`` and
``scales.paper``)::

    paper, where, statement, paper_figure, notes   text shown beside the verdict
    kind         runs (default: arms are runs) or measurement (arms are the named
                 measurement's estimators, e.g. gi-estimate-error's stale and gi-free)
    metric       one of METRICS: what each run (or probe of a measurement) contributes
    arm          the arm the paper says is better
    against      the arms it is compared with, one verdict each
    [arms.NAME]  method = registered method; set = {KEY = VALUE} run overrides (runs only)
    [scales.S]   task, preset, seeds ("0-4"), set (overrides for every arm, or the
                 measurement's parameters), tuned (bool, runs only)
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources

from asyncfl_bench.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:   # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

SCALES = ("ci", "small", "paper")
# metric: (better direction, kind). Accuracy metrics compare by difference, the times to a
# target by ratio (a run that never reaches it counts at its horizon, see measure.py).
METRICS = {
    "final_accuracy": ("higher", "accuracy"),
    "best_accuracy": ("higher", "accuracy"),
    "mean_accuracy": ("higher", "accuracy"),
    "final_slow_class_accuracy": ("higher", "accuracy"),
    "mean_slow_class_accuracy": ("higher", "accuracy"),
    "time_to_target": ("lower", "time"),
    "arrivals_to_target": ("lower", "time"),
    # a measurement's estimate against the truth: lower is better, compared by difference
    "relative_l1": ("lower", "error"),
    "cosine_distance": ("lower", "error"),
}
REQUIRED = ("paper", "where", "statement", "paper_figure", "metric", "arm", "against", "scales")
OPTIONAL = ("notes", "kind", "measurement", "arms")


@dataclass(frozen=True)
class Arm:
    name: str
    method: str
    set: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Scale:
    task: str
    preset: str
    seeds: str
    set: dict = field(default_factory=dict)
    tuned: bool = False


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    where: str
    statement: str
    paper_figure: str
    metric: str
    arm: str
    against: tuple[str, ...]
    arms: dict[str, Arm]
    scales: dict[str, Scale]
    notes: str = ""
    measurement: str | None = None    # set: the arms are this measurement's estimators

    @property
    def methods(self) -> list[str]:
        return sorted({a.method for a in self.arms.values()})


def _text_map(owner: str, value) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserError(f"{owner}: `set` must be a table of KEY = VALUE; fix the claim file")
    return {k: v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in value.items()}


def parse(claim_id: str, text: str) -> Claim:
    """A claim from its TOML text; a missing or wrong field names the claim and the field."""
    where = f"claim {claim_id}"
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where}: not valid TOML ({e}); fix the claim file") from None
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise UserError(f"{where}: missing field {missing[0]!r}; fix the claim file")
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}; valid: {', '.join(REQUIRED + OPTIONAL)}")
    if raw["metric"] not in METRICS:
        raise UserError(f"{where}: metric {raw['metric']!r} unknown; valid: {', '.join(METRICS)}")
    kind = raw.get("kind", "runs")
    if kind not in ("runs", "measurement") or (kind == "measurement") != ("measurement" in raw):
        raise UserError(f"{where}: kind is runs (with [arms]) or measurement (with measurement = NAME); "
                        f"fix the claim file")
    if (kind == "runs") != ("arms" in raw):
        raise UserError(f"{where}: " + ("missing field 'arms'" if kind == "runs" else
                                        "a measurement's arms are its estimators, so no [arms] tables"))
    if (METRICS[raw["metric"]][1] == "error") != (kind == "measurement"):
        raise UserError(f"{where}: metric {raw['metric']} is for " + ("measurements" if kind == "runs" else "runs"))
    arms = {}
    for name, a in raw.get("arms", {}).items():
        if not isinstance(a, dict) or not isinstance(a.get("method"), str) or set(a) - {"method", "set"}:
            raise UserError(f"{where}: arm {name!r} needs `method` (and optionally `set`) only")
        arms[name] = Arm(name, a["method"], _text_map(f"{where} arm {name}", a.get("set", {})))
    against = raw["against"] if isinstance(raw["against"], list) else [raw["against"]]
    for name in [raw["arm"], *against] if kind == "runs" else []:
        if name not in arms:
            raise UserError(f"{where}: arm {name!r} is compared but not defined; defined: {', '.join(arms)}")
    scales = {}
    for name, s in raw["scales"].items():
        if name not in SCALES:
            raise UserError(f"{where}: scale {name!r} unknown; valid: {', '.join(SCALES)}")
        bad = sorted(set(s) - {"task", "preset", "seeds", "set", "tuned"})
        if bad or not all(isinstance(s.get(k), str) for k in ("task", "preset", "seeds")):
            raise UserError(f"{where}: scale {name} needs task, preset and seeds as text"
                            + (f" (unknown field {bad[0]!r})" if bad else ""))
        scales[name] = Scale(s["task"], s["preset"], s["seeds"], _text_map(f"{where} scale {name}",
                             s.get("set", {})), bool(s.get("tuned", False)))
    for name in ("ci", "small"):
        if name not in scales:
            raise UserError(f"{where}: no `{name}` scale; every claim runs at ci and small")
    return Claim(claim_id, raw["paper"], raw["where"], raw["statement"], raw["paper_figure"], raw["metric"],
                 raw["arm"], tuple(against), arms, scales, raw.get("notes", ""), raw.get("measurement"))


def catalog() -> dict[str, Claim]:
    """Every claim shipped with the package, by id (the file's name)."""
    folder = resources.files("asyncfl_bench.claims") / "catalog"
    out = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".toml"):
            claim_id = entry.name[:-len(".toml")]
            out[claim_id] = parse(claim_id, entry.read_text(encoding="utf-8"))
    return out


def select(which: str) -> list[Claim]:
    """``all``, one id, or a comma list of ids."""
    claims = catalog()
    if which == "all":
        return list(claims.values())
    picked = []
    for claim_id in filter(None, (w.strip() for w in which.split(","))):
        if claim_id not in claims:
            raise UserError(f"unknown claim {claim_id!r}; see `asyncfl-bench claims list` (valid: "
                            f"{', '.join(claims)}, or all)")
        picked.append(claims[claim_id])
    if not picked:
        raise UserError("no claim named; fix: give a claim id, a comma list, or all")
    return picked
