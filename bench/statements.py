"""Where a build's time and rows go, statement by statement, from its DuckDB profile log.

    python bench/statements.py <work>/sqlorch-e10000000/run1/logs/profile-delta.jsonl [--top 15]

The runner keeps each scenario's log (``logs/profile-<scenario>.jsonl``, one JSON profile per
statement, see ``rows_read.py``). This prints the statements that took longest, with the
seconds DuckDB measured for each (``query.total_time``; statements of models built at once
overlap, so these add up to more than the wall clock on a busy machine), the rows they
scanned, and the start of their SQL: the breakdown issue 11's events figures are read from.
Standard library only, like the rest of the runner's helpers.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rows_read import statement_rows, statement_sql


@dataclass(frozen=True)
class Timed:
    seconds: float
    rows: int
    sql: str


def statement_seconds(profile: dict[str, Any]) -> float:
    """DuckDB's own time for one statement (2.x: ``query.total_time``; 1.5.x: ``latency``)."""
    query = profile.get("query")
    if isinstance(query, dict) and query.get("total_time") is not None:
        return float(query["total_time"])
    return float(profile.get("latency") or 0.0)


def timed_statements(path: Path) -> list[Timed]:
    """Every statement of one log, slowest first."""
    found = [
        Timed(statement_seconds(p), statement_rows(p), " ".join(statement_sql(p).split()))
        for p in (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    ]
    return sorted(found, key=lambda t: t.seconds, reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log", type=Path, help="a profile log (one JSON profile per line)")
    parser.add_argument("--top", type=int, default=15, help="statements shown (default 15)")
    parser.add_argument("--width", type=int, default=110, help="characters of SQL shown (default 110)")
    args = parser.parse_args(argv)
    statements = timed_statements(args.log)
    total = sum(t.seconds for t in statements)
    rows = sum(t.rows for t in statements)
    print(f"{len(statements)} statements, {total:.3f} s, {rows:,} rows scanned")
    for t in statements[: args.top]:
        print(f"{t.seconds:7.3f} s {t.rows:>12,}  {t.sql[: args.width]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
