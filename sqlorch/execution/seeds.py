"""Loading seeds; a changed CSV becomes a delta batch (the row multiset difference)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.execution.statements import execute_create
from sqlorch.planning.planner import Decision
from sqlorch.project.model import Seed
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
    RelationState,
    add_batch_statement,
    change_log,
    save_relation_statements,
)


def _create_typed(table: TableRef, types: dict[str, str], extra: dict[str, str] | None = None) -> exp.Create:
    columns = {**types, **(extra or {})}
    schema = exp.Schema(
        this=table.to_table(),
        expressions=[
            exp.ColumnDef(this=exp.to_identifier(name, quoted=True), kind=exp.DataType.build(kind))
            for name, kind in columns.items()
        ],
    )
    return exp.Create(this=schema, kind="TABLE", replace=True)


def _normal(value: Any) -> Any:
    return float(value) if isinstance(value, float) else value


def _row_diff(
    adapter: Adapter, physical: TableRef, names: list[str], rows: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows the table has and the CSV lost, and the rows the CSV gained (multisets)."""
    old_rows = Counter(
        tuple(_normal(v) for v in row)
        for row in adapter.fetch(exp.select(*[exp.column(n, quoted=True) for n in names]).from_(physical.to_table()))
    )
    new_rows = Counter(tuple(_normal(v) for v in row) for row in rows)
    return list((old_rows - new_rows).elements()), list((new_rows - old_rows).elements())


def predicted_seed_change(
    adapter: Adapter,
    seed: Seed,
    physical: TableRef,
    decision: Decision,
    state: RelationState | None,
) -> tuple[int, bool] | None:
    """What ``execute_seed`` would record, read-only, for the plan: (rows changed, appends
    only) for a diffed seed, None when it loads whole. Same test and same diff as the load."""
    types, rows = seed.read()
    same_shape = state is not None and state.columns == types
    if decision.action != "incremental" or not same_shape or adapter.columns(change_log(seed.ref)) is None:
        return None
    removed, added = _row_diff(adapter, physical, list(types), rows)
    return len(removed) + len(added), not removed


def execute_seed(
    adapter: Adapter, seed: Seed, physical: TableRef, decision: Decision, state: RelationState | None, next_batch: int
) -> tuple[int, str]:
    """Load or update one seed; returns the rows loaded or changed and the batch kind."""
    types, rows = seed.read()
    names = list(types)
    fingerprint = seed.fingerprint()
    log = change_log(seed.ref)
    record = RelationState(fingerprint, types, None, None)
    same_shape = state is not None and state.columns == types
    if decision.action == "incremental" and same_shape and adapter.columns(log) is not None:
        removed, added = _row_diff(adapter, physical, names, rows)
        with adapter.transaction():
            adapter.execute(exp.delete(physical.to_table()))
            adapter.insert_rows(physical, names, rows)
            adapter.insert_rows(
                log,
                [*names, BATCH_COLUMN, OLD_COLUMN],
                [(*r, next_batch, True) for r in removed] + [(*r, next_batch, False) for r in added],
            )
            for statement in save_relation_statements(str(seed.ref), record):
                adapter.execute(statement)
            if removed or added:
                kind = "delta" if removed else "append"
                adapter.execute(add_batch_statement(str(seed.ref), next_batch, kind, len(removed) + len(added)))
        return len(removed) + len(added), "delta" if removed else "append"
    with adapter.transaction():
        execute_create(adapter, _create_typed(physical, types))
        adapter.insert_rows(physical, names, rows)
        execute_create(adapter, _create_typed(log, types, {BATCH_COLUMN: "BIGINT", OLD_COLUMN: "BOOLEAN"}))
        for statement in save_relation_statements(str(seed.ref), record):
            adapter.execute(statement)
        adapter.execute(add_batch_statement(str(seed.ref), next_batch, "full", len(rows)))
    return len(rows), "full"
