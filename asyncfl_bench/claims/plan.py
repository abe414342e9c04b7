"""A claim at a scale as ordinary run configs, and the table row its finished runs give.

The configs are what ``asyncfl-bench run`` would resolve for the same task, preset, seed
and overrides, so a claim's runs share the results store with every other command: a run
already there is reused, an interrupted one resumes, and a report sees them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asyncfl_bench.claims import measure, verdict
from asyncfl_bench.claims.spec import Claim, Scale
from asyncfl_bench.config.identity import run_id
from asyncfl_bench.config.registry import get_method, get_task
from asyncfl_bench.config.settings import resolve
from asyncfl_bench.errors import UserError
from asyncfl_bench.results.store import finished_summary, run_dir

COLUMNS = ["claim", "scale", "arm", "against", "metric", "paper", "where", "paper_figure", "measured",
           "effect", "low", "high", "wins", "losses", "seeds", "censored", "verdict", "claim_verdict",
           "task", "preset", "run_seconds", "runs"]


@dataclass(frozen=True)
class Plan:
    claim: Claim
    scale_name: str
    scale: Scale
    seeds: list[int]
    configs: dict[str, list[dict]]        # arm -> one config per seed, in seed order

    def all_configs(self) -> list[dict]:
        seen, out = set(), []
        for cfgs in self.configs.values():
            for cfg in cfgs:
                key = (cfg["method"], run_id(cfg))
                if key not in seen:       # two arms may share a run (e.g. the same control)
                    seen.add(key)
                    out.append(cfg)
        return out


def make_plan(claim: Claim, scale_name: str, seeds: list[int], device: str, results: Path) -> Plan:
    """Every run the claim needs at this scale, resolved (and checked) before any starts."""
    if scale_name not in claim.scales:
        raise UserError(f"claim {claim.id} has no `{scale_name}` scale (it has {', '.join(claim.scales)}); "
                        f"fix: pick one of those with --scale")
    scale = claim.scales[scale_name]
    task = get_task(scale.task)
    names = claim.methods
    configs = {}
    for arm_name, arm in claim.arms.items():
        overrides = {**scale.set, **arm.set}
        cfgs = [resolve(task, scale.preset, get_method(arm.method), s, device, dict(overrides), names)
                for s in seeds]
        if scale.tuned:
            from asyncfl_bench.tuning import tuned as tuned_file
            cfgs = tuned_file.apply(cfgs, tuned_file.default_path(results, scale.task, scale.preset))
        configs[arm_name] = cfgs
    return Plan(claim, scale_name, scale, seeds, configs)


def _arm_values(plan: Plan, arm: str, results: Path) -> tuple[list[measure.Value], list[dict]]:
    values, summaries = [], []
    for cfg in plan.configs[arm]:
        folder = run_dir(results, cfg["task"], cfg["method"], run_id(cfg))
        summary = finished_summary(folder)
        if summary is None:
            raise UserError(f"claim {plan.claim.id}: run {cfg['method']} seed {cfg['seed']} is not finished in "
                            f"{results}; fix: asyncfl-bench claims run {plan.claim.id} --scale {plan.scale_name}")
        values.append(measure.measure(plan.claim.metric, folder, summary))
        summaries.append(summary)
    return values, summaries


def rows(plan: Plan, results: Path) -> list[dict]:
    """One row per comparison of the claimed arm, from the finished runs in ``results``."""
    claim = plan.claim
    mine, my_summaries = _arm_values(plan, claim.arm, results)
    out = []
    for other in claim.against:
        theirs, their_summaries = _arm_values(plan, other, results)
        c = verdict.decide(claim.metric, [v.value for v in mine], [v.value for v in theirs])
        runs = [f"{s['method']}/{s['run_id']}" for s in my_summaries + their_summaries]
        out.append({
            "claim": claim.id, "scale": plan.scale_name, "arm": claim.arm, "against": other,
            "metric": claim.metric, "paper": claim.paper, "where": claim.where,
            "paper_figure": claim.paper_figure, "measured": verdict.measured_text(claim.metric, c),
            "effect": c.effect, "low": c.low, "high": c.high, "wins": c.wins, "losses": c.losses,
            "seeds": c.seeds, "censored": f"{sum(v.censored for v in mine)}/{sum(v.censored for v in theirs)}",
            "verdict": c.verdict, "task": plan.scale.task, "preset": plan.scale.preset,
            "run_seconds": round(sum(s["seconds"]["total"] for s in my_summaries + their_summaries), 1),
            "runs": " ".join(runs),
        })
    whole = verdict.overall([r["verdict"] for r in out])
    for r in out:
        r["claim_verdict"] = whole
    return out
