"""Change capture for sources, once per build, into each source's change log.

- ``cursor`` + ``append_only``: rows past the last captured cursor are new images.
- ``unique_key`` (with or without ``cursor``): rows compared with a shadow copy by key and
  value give new images, old images and deletes (a key gone from the source).
- nothing declared: an order-independent fingerprint; a change is a ``full`` batch.

Each capture commits its change-log rows, shadow update, batch record and cursor in one
transaction, so a crash leaves the previous capture in place and the next build redoes it.

A source that did not change costs one cheap query and writes nothing:

- ``append_only``: its cursor's maximum is the one recorded, so no row lies past it.
- ``unique_key``: the source's fingerprint (row count + sum of 64-bit row hashes, over the
  shadow's columns) equals the fingerprint recorded for the shadow, so the source and the
  shadow hold the same rows and a diff would find nothing. This assumes what the
  fingerprint of an undeclared source already assumes: two different multisets of rows
  with the same count do not have the same hash sum (odds of about 2^-64 per change).
  The recorded fingerprint always describes the shadow as it is: it is cleared before the
  shadow changes and written again after, in that order even where there are no
  transactions, so a crash leaves no fingerprint (and the next build diffs) rather than a
  stale one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

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

LOG = logging.getLogger(__name__)


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
    known: Mapping[TableRef, dict[str, exp.DataType]],
) -> Captured | None:
    """Capture one source's changes. ``known`` holds the columns of the tables that exist
    (the source, its change log and shadow), read by the caller in one catalog query.
    Returns None when nothing was written: the source is missing or did not change."""
    columns = known.get(ref)
    if columns is None:
        return None  # the model reading it will fail with the warehouse's message
    names = list(columns)
    name = str(ref)
    if spec is None or not (spec.cursor or spec.unique_key):
        fingerprint = adapter.fingerprint(ref)
        if state is not None and state.fingerprint == fingerprint:
            return None
        with adapter.transaction():
            for statement in save_relation_statements(
                name, RelationState(fingerprint, dict.fromkeys(names, ""), None, None)
            ):
                adapter.execute(statement)
            adapter.execute(add_batch_statement(name, next_batch, "full", 0))
        return Captured(batch=next_batch, kind="full")
    key = list(spec.unique_key)
    log, shadow = change_log(ref), shadow_table(ref)
    keeps_shadow = bool(key) and not spec.append_only
    first = state is None or log not in known or (bool(key) and shadow not in known)
    # Captured before with the same columns and key: the recorded cursor and fingerprint apply.
    same_setup = state is not None and not first and names == list(state.columns or {}) and state.key == key
    if same_setup and keeps_shadow:
        assert state is not None
        if state.fingerprint is not None and adapter.fingerprint(ref, names) == state.fingerprint:
            return None
    cursor_hi = None
    if spec.cursor:
        row = adapter.fetch(exp.select(exp.func("max", exp.column(spec.cursor, quoted=True))).from_(ref.to_table()))
        cursor_hi = None if row[0][0] is None else str(row[0][0])
        if same_setup and spec.append_only and state is not None and cursor_hi == state.cursor_hi:
            return None
    if keeps_shadow and not first and (_key_repeats(adapter, ref, key) or _key_repeats(adapter, shadow, key)):
        # A key diff cannot see a second copy of a row, nor its removal: while the declared
        # key repeats (in the source now, or in the copy taken last time), each change is
        # captured whole and the source's readers rebuild, which is exact either way.
        LOG.warning(
            "source %s: unique_key (%s) has repeated values; its readers are rebuilt in full until it is unique",
            name,
            ", ".join(key),
        )
        first = True
    if first:
        with adapter.transaction():
            if state is not None and state.fingerprint is not None:
                _forget_fingerprint(adapter, name, state)
            creates = [create_change_log(log, ref, names)]
            if key:
                creates.append(create_table_as(shadow, select_from(ref, names)))
            for create in creates:
                execute_create(adapter, create)
            fingerprint = adapter.fingerprint(shadow, names) if keeps_shadow else None
            for statement in save_relation_statements(
                name, RelationState(fingerprint, dict.fromkeys(names, ""), key, cursor_hi)
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
            _capture_keyed(adapter, ref, key, names, candidates, next_batch)
        rows = adapter.fetch(count_rows(log).where(exp.column(BATCH_COLUMN, quoted=True).eq(next_batch)))[0][0]
        # Order matters where there are no transactions: the batch is recorded before the
        # shadow and the cursor move past it, so a crash can repeat a batch (consumers
        # replace keys, which is idempotent) but never lose one.
        if rows:
            kind = "append" if spec.append_only else "delta"
            adapter.execute(add_batch_statement(name, next_batch, kind, int(rows)))
            if keeps_shadow:
                if state.fingerprint is not None:
                    _forget_fingerprint(adapter, name, state)
                _refresh_shadow(adapter, ref, key, names, next_batch)
        # Taken again even when the shadow did not change: the recorded one did not match the
        # source (a row the key diff cannot see, or a fingerprint of another engine version).
        fingerprint = adapter.fingerprint(shadow, names) if keeps_shadow else None
        for statement in save_relation_statements(
            name, RelationState(fingerprint, dict.fromkeys(names, ""), key, cursor_hi or state.cursor_hi)
        ):
            adapter.execute(statement)
    return Captured(batch=next_batch if rows else None, kind="append" if spec.append_only else "delta", rows=int(rows))


def _key_repeats(adapter: Adapter, table: TableRef, key: list[str]) -> bool:
    """Whether two rows of ``table`` share a key value (NULLs count as equal, as in the diff)."""
    columns = [exp.column(name, table="t", quoted=True) for name in key]
    query = (
        exp.select(exp.Literal.number(1))
        .from_(table.to_table(alias="t"))
        .group_by(*columns)
        .having(exp.func("count", exp.Star()) > 1)
        .limit(1)
    )
    return bool(adapter.fetch(query))


def _forget_fingerprint(adapter: Adapter, name: str, state: RelationState) -> None:
    """Clear a keyed source's recorded fingerprint before its shadow changes."""
    for statement in save_relation_statements(name, replace(state, fingerprint=None)):
        adapter.execute(statement)


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
