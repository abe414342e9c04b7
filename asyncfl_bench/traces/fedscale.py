"""Import FedScale's device traces into the plain trace schema.

FedScale (Lai et al., "FedScale: Benchmarking Model and System Performance of
Federated Learning at Scale", ICML 2022) ships two Python pickles:

* device capacity (``client_device_capacity``): ``{client_id: {"computation": ms per
  sample, "communication": kbps}}``;
* behaviour (``client_behave_trace``): ``{client_id: {"active": [t...], "inactive": [t...],
  "finish_time": T, "duration": ..., "model": str}}``: the client is online from
  ``active[i]`` to ``inactive[i]``, the pattern repeating every ``finish_time`` seconds.

Pickles can run code when loaded, so they are read with ``SafeUnpickler``, which
builds only plain containers, strings and numbers and refuses every other object.

Conversion, as FedScale's ``ClientMetadata.get_completion_time`` defines a round:
compute = augmentation (3: a backward pass costs about two forward passes) ×
batch_size × local_steps × computation / 1000 seconds; communication =
(download + upload model size in kbit) / communication kbps. The trace file keeps
the raw figures: ``compute_s_per_sample`` = augmentation × computation / 1000 with
``samples_per_job`` = batch_size × local_steps, and ``bandwidth_kbps`` with
``model_kbit``. FedScale samples no per-job jitter, so the jitter is constant.
Our client c takes the c-th device (and behaviour) entry in sorted id order, wrapping
around when there are fewer entries than clients, as FedScale maps clients to profiles.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import pandas as pd

from asyncfl_bench.errors import UserError
from asyncfl_bench.traces.file import MARKER, VERSION, write_table

PLAIN = (dict, list, tuple, set, frozenset, str, bytes, int, float, bool, type(None))


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused object type {module}.{name}: only plain containers "
                                     "and numbers are allowed")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent reference: only plain data is allowed")


def _check_plain(value, depth: int = 0) -> None:
    if depth > 50 or not isinstance(value, PLAIN):
        raise pickle.UnpicklingError(f"refused object type {type(value).__name__}")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, depth + 1)
            _check_plain(v, depth + 1)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            _check_plain(v, depth + 1)


def load_plain_pickle(path) -> object:
    """Read a pickle that may hold only dicts, lists, tuples, sets, strings and numbers."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; fix: give the path of FedScale's pickle")
    try:
        value = SafeUnpickler(io.BytesIO(path.read_bytes())).load()
        _check_plain(value)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: {e}; this reader accepts FedScale's plain trace pickles only") from None
    except (EOFError, ValueError, TypeError, IndexError, KeyError) as e:
        raise UserError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    return value


def _entries(table, path, what: str) -> list:
    if not isinstance(table, dict) or not table:
        raise UserError(f"{path}: expected a non-empty dict {{client_id: {what}}}, "
                        f"got {type(table).__name__}")
    try:
        keys = sorted(table)
    except TypeError:
        raise UserError(f"{path}: client ids must be all numbers or all strings") from None
    return [(k, table[k]) for k in keys]


def _number(entry: dict, key: str, path, client, positive: bool) -> float:
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and value == 0):
        raise UserError(f"{path}: client {client!r}: '{key}' must be a {'positive' if positive else '>= 0'} "
                        f"number, got {value!r}")
    return float(value)


def _behaviour(entry, path, client) -> tuple[str, float]:
    if not isinstance(entry, dict):
        raise UserError(f"{path}: client {client!r}: expected a dict with active/inactive/finish_time")
    active, inactive = entry.get("active"), entry.get("inactive")
    if not isinstance(active, (list, tuple)) or not isinstance(inactive, (list, tuple)) \
            or len(active) != len(inactive):
        raise UserError(f"{path}: client {client!r}: 'active' and 'inactive' must be lists of equal length")
    period = _number(entry, "finish_time", path, client, positive=True)
    windows = []
    for s, e in zip(active, inactive):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (s, e)) or not 0 <= s <= e:
            raise UserError(f"{path}: client {client!r}: window {s!r}..{e!r} is not 0 <= active <= inactive")
        windows.append((max(float(s), windows[-1][1] if windows else 0.0), min(float(e), period)))
    text = ";".join(f"{s!r}:{e!r}" for s, e in windows if s <= e)
    return text, period


def import_fedscale(device_path, num_clients: int, out, behaviour_path=None, batch_size: int = 20,
                    local_steps: int = 20, model_kbit: float = 8000.0, augmentation: float = 3.0) -> Path:
    """Convert FedScale pickles into a trace file with ``num_clients`` rows."""
    if num_clients < 1 or batch_size < 1 or local_steps < 1 or model_kbit <= 0 or augmentation <= 0:
        raise UserError("need clients >= 1, batch size >= 1, local steps >= 1, model size > 0, augmentation > 0")
    devices = _entries(load_plain_pickle(device_path), device_path, "{'computation': ms, 'communication': kbps}")
    rows = []
    for c in range(num_clients):
        key, entry = devices[c % len(devices)]
        rows.append({"client": c,
                     "compute_s_per_sample": augmentation * _number(entry, "computation", device_path, key, False) / 1000,
                     "jitter": "constant", "jitter_param": 0.0,
                     "bandwidth_kbps": _number(entry, "communication", device_path, key, True)})
    if behaviour_path is not None:
        behave = _entries(load_plain_pickle(behaviour_path), behaviour_path, "{'active': [...], ...}")
        for c, row in enumerate(rows):
            key, entry = behave[c % len(behave)]
            row["availability"], row["availability_period_s"] = _behaviour(entry, behaviour_path, key)
    header = {MARKER: VERSION, "kind": "fedscale", "params": {"batch_size": batch_size, "local_steps": local_steps,
              "augmentation": augmentation}, "seed": None, "samples_per_job": batch_size * local_steps,
              # each direction moves the model once: FedScale's (upload + download) / bandwidth
              "model_kbit": model_kbit,
              "source": {"device": Path(device_path).name,
                         "behaviour": Path(behaviour_path).name if behaviour_path else None}}
    return write_table(pd.DataFrame(rows), header, out)


def fedscale_round_seconds(computation_ms: float, communication_kbps: float, batch_size: int, local_steps: int,
                           model_kbit: float, augmentation: float = 3.0) -> float:
    """FedScale's round time of one device, for checking the conversion."""
    return (augmentation * batch_size * local_steps * computation_ms / 1000
            + 2 * model_kbit / communication_kbps)

