"""The run's device from --device."""
from __future__ import annotations

from pathlib import Path

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


def _cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what ``platform`` knows)."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> dict:
    """Where a run ran and with what, for the report (server cost and wall times depend on
    it): CPU, core count, the accelerator, the OS, and the Python, torch, NumPy and
    asyncfl-bench versions. No host name: a report is for sharing."""
    import os
    import platform

    import numpy as np

    from asyncfl_bench import __version__

    accelerator = torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "none"
    return {"cpu": _cpu_name(), "cpus": os.cpu_count(), "accelerator": accelerator, "os": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "asyncfl_bench": __version__}
