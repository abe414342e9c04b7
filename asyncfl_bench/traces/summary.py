"""What a trace does before any training: job durations and the staleness its schedule implies."""
from __future__ import annotations


import numpy as np
import pandas as pd

from asyncfl_bench.traces.schedule import Schedule
from asyncfl_bench.traces.model import Trace


def schedule_frame(schedule: Schedule) -> pd.DataFrame:
    """The job sequence, with each job's staleness if every arrival made one server update
    (FedAsync-like; a buffer of K arrivals per update divides it by about K), counted from
    the arrival its base model was current at (``base_after``: the dispatch, unless lagged)."""
    arrival = np.arange(len(schedule))
    return pd.DataFrame({"arrival": arrival, "client": schedule.client, "job_index": schedule.job_index,
                         "dispatch_time": schedule.dispatch_time, "arrival_time": schedule.arrival_time,
                         "dispatched_after": schedule.dispatched_after,
                         "base_after": schedule.bases, "staleness": arrival - schedule.bases})


def trace_summary(trace: Trace, schedule: Schedule) -> dict:
    frame = schedule_frame(schedule)
    durations = (frame["arrival_time"] - frame["dispatch_time"]).to_numpy()
    per_client = pd.Series(durations).groupby(frame["client"].to_numpy()).mean()
    tau = frame["staleness"].to_numpy()
    q = lambda v, p: float(np.percentile(v, p)) if len(v) else float("nan")
    return {
        "kind": trace.kind, "clients": trace.num_clients, "jobs": len(frame),
        "duration": {f"p{p}": q(durations, p) for p in (5, 25, 50, 75, 95, 99)} | {"mean": float(durations.mean())},
        "client_mean_duration": {f"p{p}": q(per_client.to_numpy(), p) for p in (0, 5, 50, 95, 100)},
        "expected_client_duration": {f"p{p}": q(trace.mean_duration(), p) for p in (0, 5, 50, 95, 100)},
        "staleness": {"mean": float(tau.mean()), "p50": q(tau, 50), "p95": q(tau, 95), "p99": q(tau, 99),
                      "max": int(tau.max())},
        "virtual_time": float(frame["arrival_time"].iloc[-1]),
        "clients_seen": int(frame["client"].nunique()),
    }


