"""The run's device from --device."""
from __future__ import annotations

import torch

from asyncfl_bench.errors import UserError


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but torch sees no CUDA device; fix: --device cpu or auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"unknown device '{name}'; valid: auto, cpu, cuda, cuda:N")
    return name
