"""The claims tables ``claims run`` leaves in RESULTS/claims/<scale>.csv, as a report shows them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# column in the file -> heading in the report, in the order shown
SHOWN = {"claim": "claim", "against": "vs", "paper": "paper", "where": "where", "paper_figure": "paper's figure",
         "measured": "measured (95 % CI)", "wins": "wins", "pairs": "pairs", "seeds": "seeds", "censored": "censored",
         "verdict": "verdict", "claim_verdict": "claim's verdict", "wall_seconds": "wall s"}


def claim_tables(results: Path) -> list[tuple[str, pd.DataFrame, str | None, pd.DataFrame]]:
    """(scale, shown table, problem, the file's rows) per claims file, scales in file-name
    order; a file that cannot be read comes back empty with the reason, so the rest of a
    report is still written."""
    out = []
    for path in sorted((Path(results) / "claims").glob("*.csv")):
        try:
            frame = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            out.append((path.stem, pd.DataFrame(), f"{path.name} is not readable ({e.__class__.__name__}); "
                                                    f"rerun asyncfl-bench claims run to rewrite it", pd.DataFrame()))
            continue
        keep = [c for c in SHOWN if c in frame.columns]
        out.append((path.stem, frame[keep].rename(columns=SHOWN).fillna("—"), None, frame))
    return out


def markdown(tables: list[tuple], to_rows, figures: dict[str, str] | None = None) -> str:
    lines = ["# Claims", ""]
    for scale, frame, problem, _ in tables:
        lines += [f"## scale {scale}", ""] + ([problem] if problem else to_rows(frame)) + [""]
        if figures and scale in figures:
            lines += [f"![claims at scale {scale}]({figures[scale]})", ""]
    return "\n".join(lines)


def plottable(raw: pd.DataFrame) -> bool:
    """A claims file from ``claims run`` (older files lack the per-pair effects)."""
    return not raw.empty and {"claim", "against", "kind", "effect", "low", "high", "verdict",
                              "effects"} <= set(raw.columns)
