"""The claims tables ``claims run`` leaves in RESULTS/claims/<scale>.csv, as a report shows them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# column in the file -> heading in the report, in the order shown
SHOWN = {"claim": "claim", "against": "vs", "paper": "paper", "where": "where", "paper_figure": "paper's figure",
         "measured": "measured (95 % CI)", "wins": "wins", "pairs": "pairs", "seeds": "seeds", "censored": "censored",
         "verdict": "verdict", "claim_verdict": "claim's verdict", "wall_seconds": "wall s"}


def claim_tables(results: Path) -> list[tuple[str, pd.DataFrame, str | None]]:
    """(scale, table, problem) per claims file, scales in file-name order; a file that cannot
    be read comes back empty with the reason, so the rest of a report is still written."""
    out = []
    for path in sorted((Path(results) / "claims").glob("*.csv")):
        try:
            frame = pd.read_csv(path)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            out.append((path.stem, pd.DataFrame(), f"{path.name} is not readable ({e.__class__.__name__}); "
                                                    f"rerun asyncfl-bench claims run to rewrite it"))
            continue
        keep = [c for c in SHOWN if c in frame.columns]
        out.append((path.stem, frame[keep].rename(columns=SHOWN).fillna("—"), None))
    return out


def markdown(tables: list[tuple[str, pd.DataFrame, str | None]], to_rows) -> str:
    lines = ["# Claims", ""]
    for scale, frame, problem in tables:
        lines += [f"## scale {scale}", ""] + ([problem] if problem else to_rows(frame)) + [""]
    return "\n".join(lines)
