"""gi-switch's switching rule (Wang & Gao, Sec. 4.2): when to stop estimating, and the
α blend from the estimate back to the stale update."""
from __future__ import annotations

from asyncfl_bench.errors import UserError


class SwitchRule:
    """Switch once mean(E2) < ``margin``·mean(E1) over the last ``window`` checks, then
    fade the estimate's weight α from 1 to 0 over ``blend`` server versions.

    ``margin=1, window=1`` (the defaults here) is the paper's rule, E1 > E2; the reference
    code switches on ``e2 < e1*0.9`` (margin 0.9, window 1). No decision is taken before
    ``window`` checks exist."""

    def __init__(self, blend: int, enabled: bool = True, margin: float = 1.0, window: int = 1):
        if blend < 0:
            raise UserError(f"blend_versions must be >= 0, got {blend}")
        if not margin > 0 or window < 1:
            raise UserError(f"switch_margin must be > 0 and switch_window >= 1, got {margin}, {window}")
        self.blend, self.enabled, self.margin, self.window = blend, enabled, float(margin), int(window)
        self.switched_at: int | None = None
        self.checks: list[tuple[int, float, float]] = []   # (version, E1, E2)

    def observe(self, e1: float, e2: float, version: int) -> bool:
        """Record one measurement; True if it triggers the switch."""
        if not self.enabled or self.switched_at is not None:
            return False
        self.checks.append((version, e1, e2))
        if len(self.checks) < self.window:
            return False
        recent = self.checks[-self.window:]
        mean_e1 = sum(c[1] for c in recent) / self.window
        mean_e2 = sum(c[2] for c in recent) / self.window
        if mean_e2 < self.margin * mean_e1:
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
