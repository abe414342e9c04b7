"""gi-switch's switching rule (Wang & Gao, Sec. 4.2): when to stop estimating, and the
α blend from the estimate back to the stale update."""
from __future__ import annotations

from asyncfl_bench.errors import UserError


class SwitchRule:
    """Switch once E1 > E2, then fade the estimate's weight α from 1 to 0
    over ``blend`` server versions."""

    def __init__(self, blend: int, enabled: bool = True):
        if blend < 0:
            raise UserError(f"blend_versions must be >= 0, got {blend}")
        self.blend, self.enabled = blend, enabled
        self.switched_at: int | None = None
        self.checks: list[tuple[int, float, float]] = []   # (version, E1, E2)

    def observe(self, e1: float, e2: float, version: int) -> bool:
        """Record one measurement; True if it triggers the switch."""
        if not self.enabled or self.switched_at is not None:
            return False
        self.checks.append((version, e1, e2))
        if e1 > e2:
            self.switched_at = version
            return True
        return False

    def alpha(self, version: int) -> float:
        """Weight of the estimate: 1 before the switch, then linear down to 0."""
        if self.switched_at is None:
            return 1.0
        if self.blend == 0:
            return 0.0
        return float(min(1.0, max(0.0, 1.0 - (version - self.switched_at) / self.blend)))
