"""Change capture for sources, once per build, into each source's change log.

- ``cursor`` + ``append_only``: rows past the last captured cursor are new images.
- ``unique_key`` (with or without ``cursor``): rows compared with a shadow copy by key and
  value give new images, old images and deletes (a key gone from the source).
- nothing declared: an order-independent fingerprint; a change is a ``full`` batch.

Each capture commits its change-log rows, shadow update, batch record and cursor in one
transaction, so a crash leaves the previous capture in place and the next build redoes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.execution.statements import (
    changed_rows,
    count_rows,
    create_change_log,
    create_table_as,
    execute_create,
    insert_into,
    null_safe_match,
    select_from,
    with_images,
)
from sqlorch.project.model import SourceSpec
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
    RelationState,
    add_batch_statement,
    change_log,
    save_relation_statements,
    shadow_table,
)


@dataclass(frozen=True)
class Captured:
    batch: int | None  # the new batch, if any
    kind: str = "delta"
    rows: int = 0


def _cursor_bound(spec: SourceSpec, value: str, data_type: exp.DataType) -> exp.Expr:
    assert spec.cursor
    return exp.cast(exp.Literal.string(value), data_type)


def capture_source(
    adapter: Adapter,
    ref: TableRef,
    spec: SourceSpec | None,
    state: RelationState | None,
    next_batch: int,
) -> Captured:
    columns = adapter.columns(ref)
    if columns is None:
        return Captured(batch=None)  # the model reading it will fail with the warehouse's message
    names = list(columns)
    name = str(ref)
    if spec is None or not (spec.cursor or spec.unique_key):
        fingerprint = adapter.fingerprint(ref)
        if state is not None and state.fingerprint == fingerprint:
            return Captured(batch=None)
        with adapter.transaction():
            for statement in save_relation_statements(
                name, RelationState(fingerprint, dict.fromkeys(names, ""), None, None)
            ):
                adapter.execute(statement)
            adapter.execute(add_batch_statement(name, next_batch, "full", 0))
        return Captured(batch=next_batch, kind="full")
    cursor_hi = None
    if spec.cursor:
        row = adapter.fetch(exp.select(exp.func("max", exp.column(spec.cursor, quoted=True))).from_(ref.to_table()))
        cursor_hi = None if row[0][0] is None else str(row[0][0])
    log = change_log(ref)
    first = (
        state is None
        or adapter.columns(log) is None
        or (spec.unique_key and adapter.columns(shadow_table(ref)) is None)
    )
    if first:
        with adapter.transaction():
            creates = [create_change_log(log, ref, names)]
            if spec.unique_key:
                creates.append(create_table_as(shadow_table(ref), select_from(ref, names)))
            for create in creates:
                execute_create(adapter, create)
            for statement in save_relation_statements(
                name, RelationState(None, dict.fromkeys(names, ""), list(spec.unique_key), cursor_hi)
            ):
                adapter.execute(statement)
            adapter.execute(add_batch_statement(name, next_batch, "full", 0))
        return Captured(batch=next_batch, kind="full")
    assert state is not None
    candidates = select_from(ref, names, "s")
    if spec.cursor and state.cursor_hi is not None:
        candidates = candidates.where(
            exp.GT(
                this=exp.column(spec.cursor, table="s", quoted=True),
                expression=_cursor_bound(spec, state.cursor_hi, columns[spec.cursor]),
            )
        )
    if spec.cursor and cursor_hi is not None:
        candidates = candidates.where(
            exp.LTE(
                this=exp.column(spec.cursor, table="s", quoted=True),
                expression=_cursor_bound(spec, cursor_hi, columns[spec.cursor]),
            )
        )
    with adapter.transaction():
        # Leftovers of a capture interrupted on a warehouse without transactions.
        adapter.execute(exp.delete(log.to_table(), where=exp.column(BATCH_COLUMN, quoted=True) >= next_batch))
        if spec.append_only:
            adapter.execute(
                insert_into(log, [*names, BATCH_COLUMN, OLD_COLUMN], with_images(candidates, names, next_batch, False))
            )
        else:
            _capture_keyed(adapter, ref, list(spec.unique_key), names, candidates, next_batch)
        rows = adapter.fetch(count_rows(log).where(exp.column(BATCH_COLUMN, quoted=True).eq(next_batch)))[0][0]
        # Order matters where there are no transactions: the batch is recorded before the
        # shadow and the cursor move past it, so a crash can repeat a batch (consumers
        # replace keys, which is idempotent) but never lose one.
        if rows:
            kind = "append" if spec.append_only else "delta"
            adapter.execute(add_batch_statement(name, next_batch, kind, int(rows)))
            if not spec.append_only:
                _refresh_shadow(adapter, ref, list(spec.unique_key), names, next_batch)
        for statement in save_relation_statements(
            name, RelationState(None, dict.fromkeys(names, ""), list(spec.unique_key), cursor_hi or state.cursor_hi)
        ):
            adapter.execute(statement)
    return Captured(batch=next_batch if rows else None, kind="append" if spec.append_only else "delta", rows=int(rows))


def _capture_keyed(
    adapter: Adapter, ref: TableRef, key: list[str], names: list[str], candidates: exp.Select, batch: int
) -> None:
    log, shadow = change_log(ref), shadow_table(ref)
    all_columns = [*names, BATCH_COLUMN, OLD_COLUMN]
    unchanged = (
        exp.select(exp.Literal.number(1)).from_(shadow.to_table(alias="h")).where(null_safe_match("h", "s", names))
    )
    new_images = candidates.where(exp.not_(exp.Exists(this=unchanged)))
    adapter.execute(insert_into(log, all_columns, with_images(new_images, names, batch, False)))
    this_batch = exp.and_(
        exp.column(BATCH_COLUMN, table="n", quoted=True).eq(batch),
        exp.not_(exp.column(OLD_COLUMN, table="n", quoted=True)),
    )
    replaced = exp.Exists(
        this=exp.select(exp.Literal.number(1))
        .from_(log.to_table(alias="n"))
        .where(exp.and_(this_batch, null_safe_match("n", "h", key)))
    )
    still_there = exp.Exists(
        this=exp.select(exp.Literal.number(1)).from_(ref.to_table(alias="s")).where(null_safe_match("s", "h", key))
    )
    old_images = select_from(shadow, names, "h").where(exp.or_(replaced, exp.not_(still_there)))
    adapter.execute(insert_into(log, all_columns, with_images(old_images, names, batch, True)))


def _refresh_shadow(adapter: Adapter, ref: TableRef, key: list[str], names: list[str], batch: int) -> None:
    """Replace the shadow rows of every key in ``batch`` by the batch's new images."""
    log, shadow = change_log(ref), shadow_table(ref)
    in_batch = exp.Exists(
        this=exp.select(exp.Literal.number(1))
        .from_(log.to_table(alias="n"))
        .where(
            exp.and_(exp.column(BATCH_COLUMN, table="n", quoted=True).eq(batch), null_safe_match("n", shadow.name, key))
        )
    )
    adapter.execute(exp.delete(shadow.to_table(), where=in_batch))
    adapter.execute(
        insert_into(
            shadow,
            names,
            changed_rows(log, names, batch - 1, batch).where(exp.not_(exp.column(OLD_COLUMN, table="c", quoted=True))),
        )
    )
