"""Trace files: a versioned plain table, one row per client (CSV or Parquet).

Schema version 1. Header (CSV: leading ``# key=value`` lines, values in JSON;
Parquet: the same keys in the file's key-value metadata)::

    # asyncfl-bench-trace=1          the format marker and schema version (required)
    # kind="fedrevive"               how the trace was made (generator, "fedscale", ...)
    # params={}                      the generator's parameters
    # seed=0                         the generator's seed (null when not generated)
    # samples_per_job=640            only with the compute_s_per_sample column
    # model_kbit=8000                only with the bandwidth_kbps column

Columns (one row per client, ``client`` = 0..N-1 in order):

    client               int    the client id
    compute_mean_s       float  mean compute seconds of one job          ┐ one of
    compute_s_per_sample float  seconds per sample × samples_per_job     ┘ these
    jitter               str    per-job compute distribution, mean 1: constant, uniform,
                                exponential, halfnormal, lognormal, pareto (default constant)
    jitter_param         float  uniform half-width, lognormal σ, pareto shape (default 0)
    download_s           float  seconds to receive the model             ┐ or
    upload_mean_s        float  mean seconds to send the update          ┘ bandwidth_kbps:
    bandwidth_kbps       float  each transfer lasts model_kbit / bandwidth_kbps
    upload_spread_s      float  upload is uniform in mean ± spread (default 0)
    extra_delay_s        float  seconds added to every job (default 0)
    availability         str    windows "start:end;start:end" when the client may get a
                                job (empty: always)
    availability_period_s float windows repeat with this period (0: they do not)
    base_lag_rounds      float  delayed-base mode: the client trains from the model this many
                                rounds of ``concurrency`` arrivals old (default 0)

Loading checks every column and value and names the first bad row and column.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from asyncfl_bench.atomic import atomic_write, write_with
from asyncfl_bench.errors import UserError
from asyncfl_bench.traces.model import JITTERS, Trace

VERSION = 1
MARKER = "asyncfl-bench-trace"
COLUMNS = ("client", "compute_mean_s", "compute_s_per_sample", "jitter", "jitter_param", "download_s",
           "upload_mean_s", "bandwidth_kbps", "upload_spread_s", "extra_delay_s", "availability",
           "availability_period_s", "base_lag_rounds")
NUMERIC = ("compute_mean_s", "compute_s_per_sample", "jitter_param", "download_s", "upload_mean_s",
           "bandwidth_kbps", "upload_spread_s", "extra_delay_s", "availability_period_s",
           "base_lag_rounds")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UserError("Parquet trace files need pyarrow (a dependency of asyncfl-bench, missing here); "
                        "fix: pip install pyarrow, or use a .csv trace") from None
    return pyarrow


# --- writing ---------------------------------------------------------------------------
def _windows_text(windows) -> str:
    if windows is None:
        return ""
    return ";".join(f"{s!r}:{e!r}" for s, e in np.asarray(windows, dtype=float).tolist())


def trace_frame(trace: Trace) -> pd.DataFrame:
    cols = {"client": np.arange(trace.num_clients), "compute_mean_s": trace.compute_mean,
            "jitter": trace.jitter.astype(str), "jitter_param": trace.jitter_param,
            "download_s": trace.download, "upload_mean_s": trace.upload_mean,
            "upload_spread_s": trace.upload_spread, "extra_delay_s": trace.extra_delay}
    if trace.availability is not None:
        cols["availability"] = [_windows_text(w) for w in trace.availability]
        cols["availability_period_s"] = trace.period
    if trace.base_lag.any():
        cols["base_lag_rounds"] = trace.base_lag
    return pd.DataFrame(cols)


def trace_header(trace: Trace) -> dict:
    return {MARKER: VERSION, "kind": trace.kind, "params": trace.params, "seed": trace.seed,
            **{k: v for k, v in trace.meta.items() if k not in (MARKER, "kind", "params", "seed")}}


def write_table(frame: pd.DataFrame, header: dict, path) -> Path:
    """Write a trace table with its header, atomically (``atomic.write_with``)."""
    path = Path(path)
    if _is_parquet(path):
        pa = _pyarrow()
        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = {**(table.schema.metadata or {}),
                **{k.encode(): json.dumps(v, default=_plain).encode() for k, v in header.items()}}
        return write_with(path, lambda tmp: pa.parquet.write_table(table.replace_schema_metadata(meta), tmp))
    lines = [f"# {k}={json.dumps(v, default=_plain)}" for k, v in header.items()]
    return atomic_write(path, ("\n".join(lines) + "\n" + frame.to_csv(index=False)).encode())


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def write_trace(trace: Trace, path) -> Path:
    return write_table(trace_frame(trace), trace_header(trace), path)


# --- reading ---------------------------------------------------------------------------
def _read_csv(path: Path) -> tuple[dict, pd.DataFrame, int]:
    header: dict = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    skip = 0
    for number, line in enumerate(lines, 1):
        if not line.startswith("#"):
            break
        skip = number
        key, eq, value = line[1:].strip().partition("=")
        if not eq:
            raise UserError(f"{path}: line {number}: header '{line}' is not '# key=value'")
        try:
            header[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{path}: line {number}: value of '{key.strip()}' is not JSON: {value!r}") from None
    try:
        frame = pd.read_csv(path, skiprows=skip, dtype={"jitter": str, "availability": str},
                            keep_default_na=False, na_values={c: [""] for c in NUMERIC})
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{path}: not a readable CSV table after the header: {e}") from None
    return header, frame, skip + 2   # file line of data row 1


def _read_parquet(path: Path) -> tuple[dict, pd.DataFrame, int | None]:
    pa = _pyarrow()
    try:
        table = pa.parquet.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file: {e}") from None
    header = {}
    for k, v in (table.schema.metadata or {}).items():
        key = k.decode(errors="replace")
        if key == "pandas":
            continue
        try:
            header[key] = json.loads(v)
        except json.JSONDecodeError:
            raise UserError(f"{path}: metadata '{key}' is not JSON") from None
    return header, table.to_pandas(), None


def _check_header(path: Path, header: dict) -> None:
    where = f"{path}: header" if _is_parquet(path) else f"{path}: line 1 (header)"
    if MARKER not in header:
        raise UserError(f"{where}: not an asyncfl-bench trace (no '{MARKER}=VERSION' key); fix: write "
                        f"it with `asyncfl-bench trace make` or add the header")
    if header[MARKER] != VERSION:
        raise UserError(f"{where}, key '{MARKER}': version {header[MARKER]!r} is not supported "
                        f"(this build reads version {VERSION}); fix: regenerate the trace")


def read_table(path) -> tuple[dict, pd.DataFrame, int | None]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"trace file {path} does not exist; fix: asyncfl-bench trace make ... --out {path}")
    header, frame, first_line = (_read_parquet if _is_parquet(path) else _read_csv)(path)
    _check_header(path, header)
    return header, frame, first_line


def read_trace_meta(path) -> dict:
    return read_table(path)[0]


class _Where:
    """Names a cell the way a person finds it: data row, client, CSV line, column."""

    def __init__(self, path: Path, first_line: int | None):
        self.path, self.first_line = path, first_line

    def __call__(self, row: int, column: str, problem: str) -> UserError:
        line = f", line {self.first_line + row}" if self.first_line is not None else ""
        return UserError(f"{self.path}: row {row + 1}{line}, column '{column}': {problem}")


def _numbers(frame: pd.DataFrame, column: str, where: _Where, required: bool, default: float) -> np.ndarray:
    if column not in frame:
        if required:
            raise UserError(f"{where.path}: column '{column}' is missing; columns found: "
                            f"{', '.join(map(str, frame.columns))}")
        return np.full(len(frame), default)
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    for row, (text, v) in enumerate(zip(frame[column], values)):
        if not math.isfinite(v):
            if text is None or (isinstance(text, float) and math.isnan(text)) or not str(text).strip():
                hint = "the file looks truncated (its last row is cut short)" if row == len(frame) - 1 else \
                    "a row with fewer cells than the header"
                raise where(row, column, f"the cell is empty: {hint}; fix: complete the row, or write the "
                                         "file again (asyncfl-bench trace make ... --out FILE)")
            raise where(row, column, f"{text!r} is not a finite number")
        if v < 0:
            raise where(row, column, f"{v} is negative; durations and rates must be >= 0")
    return values


def _windows(text: str, row: int, where: _Where):
    text = (text or "").strip()
    if not text:
        return None
    out = []
    for part in text.split(";"):
        start, colon, end = part.partition(":")
        try:
            s, e = float(start), float(end)
        except ValueError:
            raise where(row, "availability", f"'{part}' is not start:end") from None
        if not colon or not 0 <= s <= e or (out and s < out[-1][1]):
            raise where(row, "availability", f"'{part}': windows need 0 <= start <= end, in order, "
                                             "not overlapping")
        out.append((s, e))
    return np.array(out, dtype=float)


def frame_to_trace(header: dict, frame: pd.DataFrame, where: _Where) -> Trace:
    path = where.path
    unknown = [c for c in frame.columns if c not in COLUMNS]
    if unknown:
        raise UserError(f"{path}: unknown column '{unknown[0]}'; valid: {', '.join(COLUMNS)}")
    if len(frame) == 0:
        raise UserError(f"{path}: the table has no rows; a trace needs one row per client")
    if "client" not in frame:
        raise UserError(f"{path}: column 'client' is missing")
    for row, c in enumerate(frame["client"]):
        if str(c).strip() != str(row):
            raise where(row, "client", f"expected client {row} (clients are 0..N-1 in order), got {c!r}")
    n = len(frame)
    if "compute_mean_s" in frame or "compute_s_per_sample" not in frame:
        compute = _numbers(frame, "compute_mean_s", where, True, 0.0)
    else:
        samples = header.get("samples_per_job")
        if not isinstance(samples, (int, float)) or samples <= 0:
            raise UserError(f"{path}: header: column compute_s_per_sample needs 'samples_per_job' > 0 "
                            f"in the header, got {samples!r}")
        compute = _numbers(frame, "compute_s_per_sample", where, True, 0.0) * samples
    if "bandwidth_kbps" in frame and "download_s" not in frame and "upload_mean_s" not in frame:
        kbit = header.get("model_kbit")
        if not isinstance(kbit, (int, float)) or kbit <= 0:
            raise UserError(f"{path}: header: column bandwidth_kbps needs 'model_kbit' > 0 in the header, "
                            f"got {kbit!r}")
        bandwidth = _numbers(frame, "bandwidth_kbps", where, True, 0.0)
        for row, b in enumerate(bandwidth):
            if b == 0:
                raise where(row, "bandwidth_kbps", "0 kbps would never finish a transfer")
        download = upload = kbit / bandwidth
    else:
        download = _numbers(frame, "download_s", where, True, 0.0)
        upload = _numbers(frame, "upload_mean_s", where, True, 0.0)
    spread = _numbers(frame, "upload_spread_s", where, False, 0.0)
    for row in np.flatnonzero(spread > upload):
        raise where(int(row), "upload_spread_s", f"{spread[row]} exceeds upload_mean_s {upload[row]}: "
                                                 "upload times would go negative")
    jitter_param = _numbers(frame, "jitter_param", where, False, 0.0)
    jitter = (frame["jitter"].astype(str).str.strip().to_numpy(dtype=object) if "jitter" in frame
              else np.full(n, "constant", dtype=object))
    for row, (kind, p) in enumerate(zip(jitter, jitter_param)):
        if kind not in JITTERS:
            raise where(row, "jitter", f"unknown distribution '{kind}'; valid: {', '.join(JITTERS)}")
        if kind == "pareto" and p <= 1:
            raise where(row, "jitter_param", f"pareto shape must be > 1 (finite mean), got {p}")
        if kind == "uniform" and p > 1:
            raise where(row, "jitter_param", f"uniform half-width must be <= 1 (durations >= 0), got {p}")
    extra = _numbers(frame, "extra_delay_s", where, False, 0.0)
    lag = _numbers(frame, "base_lag_rounds", where, False, 0.0)
    for row, v in enumerate(lag):
        if v < 0:
            raise where(row, "base_lag_rounds", f"a lag must be >= 0 rounds, got {v}")
    availability, period = None, np.zeros(n)
    if "availability" in frame:
        availability = tuple(_windows(text, row, where) for row, text in enumerate(frame["availability"]))
        period = _numbers(frame, "availability_period_s", where, False, 0.0)
        for row, (w, p) in enumerate(zip(availability, period)):
            if w is not None and p > 0 and w[-1][1] > p:
                raise where(row, "availability", f"a window ends at {w[-1][1]}, after the period {p}")
    meta = {k: v for k, v in header.items() if k not in (MARKER, "kind", "params", "seed")}
    return Trace(kind=str(header.get("kind", "file")), params=dict(header.get("params") or {}),
                 compute_mean=compute, download=download, upload_mean=upload, upload_spread=spread,
                 jitter=jitter, jitter_param=jitter_param, extra_delay=extra, base_lag=lag, availability=availability,
                 period=period, seed=header.get("seed"), meta=meta)


def read_trace(path) -> Trace:
    """Load and validate a trace file; a bad cell is a UserError naming its row and column."""
    header, frame, first_line = read_table(path)
    return frame_to_trace(header, frame, _Where(Path(path), first_line))
