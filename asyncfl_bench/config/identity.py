"""A run's identity: the hash of its resolved config. Torch-free, so reading a results
folder (``report``) can check that each folder is the run its config says."""
from __future__ import annotations

import hashlib
import json


def run_id(config: dict) -> str:
    """Hash of the resolved config (seed included): equal configs share one results folder."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
