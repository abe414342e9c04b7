"""Full-state checkpoints of a run, written atomically, read with ``weights_only=True``.

A checkpoint is the simulator's ``state_dict`` (tensors and plain containers
only, so loading never unpickles arbitrary objects) plus the run id it belongs
to. It lives in the run folder as ``checkpoint.pt`` while the run is going and
is removed when the run finishes, unless asked to keep it.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import torch

from asyncfl_bench.errors import UserError
from asyncfl_bench.atomic import atomic_write

NAME = "checkpoint.pt"


def save(path: Path, rid: str, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({"run_id": rid, "state": state}, buf)
    atomic_write(path, buf.getvalue())


def load(path: Path, rid: str) -> dict:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or holding disallowed objects
        raise UserError(f"corrupt checkpoint {path} ({e.__class__.__name__}); fix: delete it to restart "
                        f"that run from scratch, or rerun with --force") from None
    if not isinstance(blob, dict) or blob.get("run_id") != rid:
        raise UserError(f"checkpoint {path} was written by a different config (run id "
                        f"{blob.get('run_id') if isinstance(blob, dict) else '?'}, expected {rid}); "
                        f"fix: delete it, or rerun with --force")
    return blob["state"]


class Writer:
    """Called after every arrival; saves every ``every`` arrivals or ``minutes`` of wall time."""

    def __init__(self, path: Path, rid: str, every: int = 0, minutes: float = 5.0):
        self.path, self.rid, self.every, self.seconds = path, rid, every, minutes * 60
        self.last = time.monotonic()

    def __call__(self, sim) -> None:
        due_count = self.every > 0 and sim.position % self.every == 0
        due_time = self.seconds > 0 and time.monotonic() - self.last >= self.seconds
        if (due_count or due_time) and sim.position < len(sim.schedule):
            save(self.path, self.rid, sim.state_dict())
            self.last = time.monotonic()
