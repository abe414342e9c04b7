"""FedRevive's run-relative settings: the gates as shares of the run's versions and
s_max from the staleness the run's schedule produces.

The authors' values are absolute and fit their CIFAR-10 run: 100 jobs in flight, B = 1,
thousands of versions (NVIDIA/NVFlare ``research/fedrevive`` README: 12,687 versions
in its time budget of 200), s_max = 75 (``dfkd_settings.adaptive_beta_factor``), no
synthesis before version 50 (``dfkd_settings.freeze_rounds``), no distillation before
version 100 (``dfkd_settings.warmup_rounds``). Kept absolute, they never revive a run of
a few hundred versions with a few jobs in flight: β(τ) ≤ 0.03 at τ ≈ 4 against s_max = 75,
and the warm-up ends after the run. So:

* a gate (``freeze_versions``, ``warmup_versions``) is a version (an int, or a string
  of digits as ``--set`` gives it), or a share of the run's versions written with a
  percent sign: ``"0.5%"`` = ⌈0.005 × versions⌉. The defaults are the authors' 50 and
  100 as shares of the paper preset's 20,000 versions (``tasks/presets.py`` ``PAPER``:
  20,000 arrivals at B = 1): 0.25 % and 0.5 %, which resolve to exactly 50 and 100
  there. The run's versions are its arrivals ÷ B (``RunPlan.versions``).
* ``cosine:s_max=auto`` takes the median staleness of the run's arrivals, in the
  method's versions (``RunPlan.staleness``): β(τ) = ½ at the median. The paper
  preset's schedule gives 73 (seeds 0 and 1), the authors' 75 within 3 %; the paper
  presets set 75 itself. digits ci (10 in flight): 6; a bring-your-own ci run (4 in
  flight): 2.

A method built outside a run (no ``ctx.plan``, as in unit tests) resolves both at paper
scale: gates 50 and 100, s_max 75, the authors' values.
"""
from __future__ import annotations

import math

import numpy as np

from asyncfl_bench.errors import UserError

PAPER_VERSIONS = 20_000   # tasks/presets.py PAPER: total_arrivals 20,000, FedRevive B = 1
AUTHORS_S_MAX = 75.0      # dfkd_settings.adaptive_beta_factor (NVIDIA: cosine_staleness_beta(staleness, 75))


def run_versions(ctx, buffer_size: int) -> int:
    """The versions the run ends at (paper scale without a plan)."""
    plan = getattr(ctx, "plan", None)
    return PAPER_VERSIONS if plan is None else plan.versions(buffer_size)


def last_version(ctx, buffer_size: int) -> int | None:
    """The server version at the run's last arrival (what a gate must lie below to
    matter); None without a plan."""
    plan = getattr(ctx, "plan", None)
    if plan is None or plan.arrivals == 0:
        return None
    return (plan.arrivals - 1) // max(int(buffer_size), 1)


def resolve_gate(value, versions: int, key: str) -> int:
    """A gate as a version: an int as it is, ``"P%"`` as ⌈P/100 · versions⌉."""
    if isinstance(value, bool):
        raise UserError(f"fedrevive.{key} must be a version or a share such as 0.5%, got {value!r}")
    if isinstance(value, int):
        version = value
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            share = -1.0
        if not 0 <= share <= 1:
            raise UserError(f"fedrevive.{key}={value}: a share must be 0% … 100% of the run's versions")
        # rounded first: 0.25 % of 20,000 is 50.000000000000004 in floating point
        version = math.ceil(round(share * versions, 6))
    else:
        try:
            version = int(str(value).strip())
        except ValueError:
            raise UserError(f"fedrevive.{key}={value!r}: give a version (e.g. 50) or a share of the run's "
                            f"versions (e.g. 0.5%)") from None
    if version < 0:
        raise UserError(f"fedrevive.{key} must be ≥ 0, got {value!r}")
    return version


def auto_s_max(ctx, buffer_size: int) -> float:
    """``s_max=auto``: the median staleness of the run's arrivals in versions of a method
    stepping every ``buffer_size`` arrivals, at least 1 (75 without a plan)."""
    plan = getattr(ctx, "plan", None)
    if plan is None or plan.arrivals == 0:
        return AUTHORS_S_MAX
    return max(1.0, float(np.median(plan.staleness(buffer_size))))
