"""Rows read by a build, from the DuckDB profile log sqlorch writes (profiles.yml `profile_log:`).

The log holds one JSON object per statement: DuckDB's own profile of it. Rows scanned is
the one cost figure that does not depend on the machine or on what else runs on it, so
the benchmark reports it next to wall time. DuckDB changed the profile's shape between
releases; both are read here:

* 2.x nests the totals: ``profile["query"]["total_rows_scanned"]`` and ``["query"]["sql"]``,
  operators under ``profile["operator"]`` with ``rows_scanned`` on the scans;
* 1.5.x is flat: ``cumulative_rows_scanned`` and ``query_name`` at the top, the operator
  tree under ``children`` with ``operator_rows_scanned``.

Where a statement's total is missing, the operators' own figures are summed instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOP_STATEMENTS = 5  # the largest readers kept per build, to show where the rows go


@dataclass
class RowsRead:
    rows: int  # rows scanned by all statements together
    statements: int  # statements profiled
    top: list[tuple[int, str]] = field(default_factory=list)  # (rows, start of the SQL), largest first


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children") or []:
        yield from walk(child)


def operator_rows(profile: dict[str, Any]) -> int:
    """Sum of the scans' own row counts over the operator tree (either release's shape)."""
    roots = profile.get("operator") or [profile]
    return sum(
        int(node.get("rows_scanned") or node.get("operator_rows_scanned") or 0) for root in roots for node in walk(root)
    )


def statement_rows(profile: dict[str, Any]) -> int:
    """Rows scanned by one statement."""
    query = profile.get("query")
    if isinstance(query, dict) and query.get("total_rows_scanned") is not None:
        return int(query["total_rows_scanned"])  # DuckDB 2.x
    if profile.get("cumulative_rows_scanned") is not None:
        return int(profile["cumulative_rows_scanned"])  # DuckDB 1.5.x
    return operator_rows(profile)


def statement_sql(profile: dict[str, Any]) -> str:
    query = profile.get("query")
    if isinstance(query, dict) and query.get("sql"):
        return str(query["sql"])
    return str(profile.get("query_name") or "")


def read_log(path: Path) -> RowsRead:
    """Totals of one profile log; a missing file reads as no statements."""
    if not path.exists():
        return RowsRead(0, 0)
    per_statement: list[tuple[int, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            profile = json.loads(line)
            per_statement.append((statement_rows(profile), " ".join(statement_sql(profile).split())))
    per_statement.sort(key=lambda item: item[0], reverse=True)
    top = [(rows, sql[:160]) for rows, sql in per_statement[:TOP_STATEMENTS] if rows]
    return RowsRead(sum(rows for rows, _ in per_statement), len(per_statement), top)
