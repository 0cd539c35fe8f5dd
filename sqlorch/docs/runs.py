"""The last runs of each model, read from the run ledger ``_sqlorch.runs`` through the
adapter, read-only. Docs are built without a warehouse as often as with one: when it
cannot be reached, the site says why instead of failing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlglot import exp

from sqlorch.adapters.registry import connect
from sqlorch.config import Target
from sqlorch.errors import SqlorchError
from sqlorch.state.store import RUN_COLUMNS, RUNS

Runs = dict[str, list[dict[str, Any]]]  # model -> its last runs, newest first


def fetch_runs(target: Target, per_model: int = 10) -> tuple[Runs, str | None]:
    """(runs per model, a note for the page when there are none to show).

    The ledger records no time yet, so "last" is the order in which the warehouse returns
    the rows (insertion order on DuckDB and Postgres for an append-only table)."""
    if target.type == "duckdb":
        path = Path(str(target.settings.get("path", "")))
        if not path.exists():  # connecting would create it: docs never write
            return {}, f"no run history: the target '{target.name}' has not been built yet ({path.name} does not exist)"
    try:
        adapter = connect(target)
    except SqlorchError as error:
        return {}, f"run history not available: target '{target.name}' is not reachable ({error.message})"
    try:
        if adapter.columns(RUNS) is None:
            return {}, f"no run history yet on target '{target.name}'"
        query = exp.select(*(exp.column(c, quoted=True) for c in RUN_COLUMNS)).from_(RUNS.to_table())
        rows = adapter.fetch(query)
    except SqlorchError as error:
        return {}, f"run history not available: {error.message}"
    finally:
        adapter.close()
    runs: Runs = {}
    for row in reversed(rows):
        record = dict(zip(RUN_COLUMNS, row, strict=True))
        found = runs.setdefault(str(record["model"]), [])
        if len(found) < per_model:
            found.append(
                {
                    "run_id": record["run_id"],
                    "status": record["status"],
                    "action": record["action"],
                    "reason": record["reason"],
                    "rows": None if record["rows"] is None else int(record["rows"]),
                    "seconds": None if record["seconds"] is None else round(float(record["seconds"]), 3),
                }
            )
    return runs, None
