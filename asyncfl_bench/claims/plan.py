"""A claim at a scale as ordinary run configs (or measurement parts), and the table rows
its finished runs give.

The configs are what ``asyncfl-bench run`` would resolve for the same task, preset, seed
and overrides, so a claim's runs share the results store with every other command: a run
already there is reused, an interrupted one resumes, and a report sees them all. A
measurement claim keeps one table per seed under RESULTS/measurements/<name>/<key>/, the
key a hash of the task, preset and parameters, reused the same way.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from asyncfl_bench.claims import measure, verdict
from asyncfl_bench.claims.spec import METRICS, Claim, Scale
from asyncfl_bench.config.identity import run_id
from asyncfl_bench.config.registry import get_measurement, get_method, get_task
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.errors import UserError
from asyncfl_bench.results.store import finished_summary, run_dir, write_csv

COLUMNS = ["claim", "scale", "arm", "against", "metric", "kind", "paper", "where", "paper_figure", "measured",
           "effect", "low", "high", "wins", "losses", "pairs", "seeds", "censored", "verdict", "claim_verdict",
           "task", "preset", "run_seconds", "runs", "effects"]


@dataclass(frozen=True)
class Plan:
    claim: Claim
    scale_name: str
    scale: Scale
    seeds: list[int]
    configs: dict[str, list[dict]]        # arm -> one config per seed, in seed order (runs)
    params: dict = field(default_factory=dict)   # the measurement's checked parameters (measurement)

    def all_configs(self) -> list[dict]:
        seen, out = set(), []
        for cfgs in self.configs.values():
            for cfg in cfgs:
                key = (cfg["method"], run_id(cfg))
                if key not in seen:       # two arms may share a run (e.g. the same control)
                    seen.add(key)
                    out.append(cfg)
        return out

    def measurement_path(self) -> Path:
        """The measurement's folder inside a results folder (relative, so tables name it
        the same on every machine)."""
        key = json.dumps([self.scale.task, self.scale.preset, self.params], sort_keys=True)
        return Path("measurements") / self.claim.measurement / hashlib.sha256(key.encode()).hexdigest()[:12]

    def measurement_folder(self, results: Path) -> Path:
        return Path(results) / self.measurement_path()


def make_plan(claim: Claim, scale_name: str, seeds: list[int], device: str, results: Path) -> Plan:
    """Every run the claim needs at this scale, resolved (and checked) before any starts."""
    if scale_name not in claim.scales:
        raise UserError(f"claim {claim.id} has no `{scale_name}` scale (it has {', '.join(claim.scales)}); "
                        f"fix: pick one of those with --scale")
    scale = claim.scales[scale_name]
    task = get_task(scale.task)
    if scale.preset not in task.presets:
        raise UserError(f"claim {claim.id}: unknown preset '{scale.preset}' for task '{task.name}'; "
                        f"valid: {', '.join(task.presets)}")
    if claim.measurement:
        module = get_measurement(claim.measurement)
        for name in (claim.arm, *claim.against):
            if name not in module.ESTIMATORS:
                raise UserError(f"claim {claim.id}: {claim.measurement} has no estimator {name!r}; "
                                f"valid: {', '.join(module.ESTIMATORS)}")
        return Plan(claim, scale_name, scale, seeds, {}, module.parse_params(scale.set))
    names = claim.methods
    configs = {}
    for arm_name, arm in claim.arms.items():
        overrides = {**scale.set, **arm.set}
        cfgs = [resolve(task, scale.preset, get_method(arm.method), s, device, dict(overrides), names)
                for s in seeds]
        if scale.tuned:
            from asyncfl_bench.tuning import tuned as tuned_file
            path = tuned_file.default_path(results, scale.task, scale.preset)
            if not path.is_file():
                raise UserError(f"claim {claim.id} at {scale_name} runs on tuned values and {path} does not exist; "
                                f"fix: asyncfl-bench tune --task {scale.task} --preset {scale.preset} --method "
                                f"{','.join(names)} --results {results} (the same budget for every method)")
            cfgs = tuned_file.apply(cfgs, path)
        configs[arm_name] = cfgs
    return Plan(claim, scale_name, scale, seeds, configs)


def run_measurement(plan: Plan, results: Path, say) -> None:
    """Each seed's part of a measurement claim, unless its table is already there."""
    folder = plan.measurement_folder(results)
    module = get_measurement(plan.claim.measurement)
    for seed in plan.seeds:
        path = folder / f"seed-{seed}.csv"
        if path.exists():
            say(f"{plan.claim.measurement} seed {seed}: done ({path})")
            continue
        folder.mkdir(parents=True, exist_ok=True)
        frame = module.measure(get_task(plan.scale.task), plan.scale.preset, seed, plan.params)
        write_csv(path, frame)
        say(f"{plan.claim.measurement} seed {seed}: {len(frame)} rows, {frame['seconds'].sum():.0f} s of inversion")


def _run_values(plan: Plan, arm: str, results: Path) -> tuple[dict, list[dict]]:
    values, summaries = {}, []
    for cfg in plan.configs[arm]:
        folder = run_dir(results, cfg["task"], cfg["method"], run_id(cfg))
        summary = finished_summary(folder)
        if summary is None:
            raise UserError(f"claim {plan.claim.id}: run {cfg['method']} seed {cfg['seed']} is not finished in "
                            f"{results}; fix: asyncfl-bench claims run {plan.claim.id} --scale {plan.scale_name}")
        values[cfg["seed"]] = measure.measure(plan.claim.metric, folder, summary)
        summaries.append(summary)
    return values, summaries


def _measured_values(plan: Plan, arm: str, results: Path) -> dict:
    """Probe (seed, client, T, τ) -> the estimator's error there."""
    folder = plan.measurement_folder(results)
    values = {}
    for seed in plan.seeds:
        path = folder / f"seed-{seed}.csv"
        if not path.exists():
            raise UserError(f"claim {plan.claim.id}: {path} is missing; fix: asyncfl-bench claims run "
                            f"{plan.claim.id} --scale {plan.scale_name}")
        frame = pd.read_csv(path)
        for r in frame[frame["estimator"] == arm].itertuples(index=False):
            values[(r.seed, r.client, r.T, r.tau)] = measure.Value(float(getattr(r, plan.claim.metric)))
    return values


def rows(plan: Plan, results: Path) -> list[dict]:
    """One row per comparison of the claimed arm, from the finished runs in ``results``."""
    claim = plan.claim
    if claim.measurement:
        get = lambda arm: (_measured_values(plan, arm, results), [])
    else:
        get = lambda arm: _run_values(plan, arm, results)
    mine, my_summaries = get(claim.arm)
    out = []
    for other in claim.against:
        theirs, their_summaries = get(other)
        units = sorted(set(mine) & set(theirs))
        mine_v, theirs_v = [mine[u].value for u in units], [theirs[u].value for u in units]
        c = verdict.decide(claim.metric, mine_v, theirs_v)
        summaries = my_summaries + their_summaries
        out.append({
            "claim": claim.id, "scale": plan.scale_name, "arm": claim.arm, "against": other,
            "metric": claim.metric, "kind": METRICS[claim.metric][1], "paper": claim.paper, "where": claim.where,
            "paper_figure": claim.paper_figure, "measured": verdict.measured_text(claim.metric, c),
            "effect": c.effect, "low": c.low, "high": c.high, "wins": c.wins, "losses": c.losses,
            "pairs": c.pairs, "seeds": len(plan.seeds),
            "censored": f"{sum(mine[u].censored for u in units)}/{sum(theirs[u].censored for u in units)}",
            "verdict": c.verdict, "task": plan.scale.task, "preset": plan.scale.preset,
            "run_seconds": round(sum(s["seconds"]["total"] for s in summaries), 1),
            "runs": " ".join(f"{s['method']}/{s['run_id']}" for s in summaries)
                    or plan.measurement_path().as_posix(),
            # each paired unit's effect, for the report's plot of the spread behind the interval
            "effects": " ".join(f"{e:.6g}" for e in verdict.effects(claim.metric, mine_v, theirs_v)),
        })
    whole = verdict.overall([r["verdict"] for r in out])
    for r in out:
        r["claim_verdict"] = whole
    return out
