"""Run history for the cost model: what each model run cost and what its table then held.

Kept as columns of ``_sqlorch.batches``, whose one row per model run is written in the
model's own transaction: a run's cost commits with its data and costs no statement of its
own (a chain of 1,000 models runs 1,000 of them). Seeds' and sources' batches leave the
columns NULL.

- ``strategy``: ``full`` or ``incremental`` (the cost model's two forms);
- ``seconds``: the run, from its first statement to its bookkeeping (the commit excluded);
- ``rows_read``, ``rows_written``: the rows the plan estimated the run reads and writes
  (table and change log), in the cost model's terms (``planning/cost.py``); later plans
  compare the run's seconds with what the prior predicts for them (the rows actually
  written to the table are the batch's and ``run_results.json``'s);
- ``table_rows``, ``distinct_keys``: the model's table after the run, the statistics the
  next plan estimates its consumers' and its own work from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

HISTORY_COLUMNS: dict[str, str] = {
    "strategy": "TEXT",
    "seconds": "DOUBLE",
    "rows_read": "BIGINT",
    "rows_written": "BIGINT",
    "table_rows": "BIGINT",
    "distinct_keys": "BIGINT",
}
KEEP = 8  # runs per model and strategy the cost model learns from: recent ones describe the table now


@dataclass(frozen=True)
class RunCost:
    strategy: str  # "full" | "incremental"
    seconds: float
    rows_read: int
    rows_written: int
    table_rows: int | None
    distinct_keys: int | None

    def values(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "seconds": round(self.seconds, 6),
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "table_rows": self.table_rows,
            "distinct_keys": self.distinct_keys,
        }


def _number(text: str | None) -> float | None:
    return float(text) if text not in (None, "") else None


def read_run_cost(values: Mapping[str, str | None]) -> RunCost | None:
    """A run cost from a batches row read as text (``load_snapshot``); None for a batch
    that is not a model run (a seed, a source, a build before the history existed)."""
    strategy, seconds = values.get("strategy"), _number(values.get("seconds"))
    if not strategy or seconds is None:
        return None
    table_rows, distinct = _number(values.get("table_rows")), _number(values.get("distinct_keys"))
    return RunCost(
        strategy=strategy,
        seconds=seconds,
        rows_read=int(_number(values.get("rows_read")) or 0),
        rows_written=int(_number(values.get("rows_written")) or 0),
        table_rows=int(table_rows) if table_rows is not None else None,
        distinct_keys=int(distinct) if distinct is not None else None,
    )


@dataclass(frozen=True)
class TableStats:
    """A model's table as its last run left it."""

    rows: int | None
    distinct_keys: int | None


def latest_stats(runs: list[tuple[int, RunCost]]) -> TableStats | None:
    """The statistics of the latest run that recorded them; distinct keys carry over from
    an earlier (full) run when an incremental one did not count them."""
    rows = distinct = None
    for _, run in sorted(runs, key=lambda item: item[0], reverse=True):
        if rows is None and run.table_rows is not None:
            rows = run.table_rows
        if distinct is None and run.distinct_keys is not None:
            distinct = run.distinct_keys
        if rows is not None and distinct is not None:
            break
    return TableStats(rows, distinct) if rows is not None or distinct is not None else None


def recent(runs: list[tuple[int, RunCost]], strategy: str) -> list[RunCost]:
    """The latest ``KEEP`` runs of one strategy, newest first."""
    matching = [run for batch, run in sorted(runs, key=lambda item: item[0], reverse=True) if run.strategy == strategy]
    return matching[:KEEP]


def distinct_keys_query(table: exp.Table, key: list[str], unique: bool, dialect: str) -> exp.Select:
    """``count(*)`` of a rebuilt table and, where the key is not unique (a window's
    partition), an approximate count of its keys: one statement, the count a full rebuild
    already runs. Where no approximate count of a tuple exists, the keys stay unknown."""
    counts: list[exp.Expr] = [exp.func("count", exp.Star())]
    if key and not unique:
        columns: list[exp.Expr] = [exp.column(name, quoted=True) for name in key]
        if len(columns) == 1 and dialect != "postgres":
            counts.append(exp.ApproxDistinct(this=columns[0]))
        elif len(columns) == 1:
            counts.append(exp.Count(this=exp.Distinct(expressions=columns)))
        elif dialect == "duckdb":
            counts.append(exp.ApproxDistinct(this=exp.Tuple(expressions=columns)))
    return exp.select(*counts).from_(table)
