"""Change capture for sources, once per build, into each source's change log.

One function per way a source is declared:

- ``capture_append_only`` (``cursor`` + ``append_only``): rows past the last captured
  cursor value, plus rows *at* that value that were not taken yet (a tie: a batch loader
  stamping a whole batch with one second). The rows taken at the maximum are kept in
  ``edge__<source>`` and compared with multiplicity (row numbers per distinct row), so a
  second identical row at the boundary is captured and a row taken once is never taken
  twice. The promise is checked, not trusted: the number of rows below the watermark (NULL
  cursors included) and the rows at it are recorded; if rows below it appear or vanish,
  or a row at it vanishes (a late insert, a delete, a truncate and reload, a recreated
  table), the source is no longer append-only and is recaptured whole (consumers rebuild).
- ``capture_keyed`` (``unique_key``, with or without ``cursor``): rows compared with a
  shadow copy by key and value give new images, old images and deletes. A cursor only
  narrows which source rows are compared (``>=`` the watermark, so ties are compared too).
  Afterwards the shadow's fingerprint must equal the source's; if it does not (a row
  changed without its cursor moving, a NULL cursor, a shadow changed behind sqlorch's
  back), the whole source is diffed by key, so a shadow never silently diverges.
- ``capture_fingerprint`` (nothing declared): an order-independent fingerprint plus the
  column types; a change is a ``full`` batch.

Before capturing, the source's columns are compared with its change log's. A changed type
(or a changed cursor, key or mode) recaptures the source whole: the old images of its
change log and shadow cannot be compared exactly with values of the new type. Added,
dropped or renamed columns are followed instead: change log, shadow and edge are rebuilt
with the source's columns (NULL where a column is new), and the diff that follows captures
every row whose values differ (e.g. a column added with a default).

Each capture commits its change-log rows, shadow update, batch record and watermark in one
transaction, so a crash leaves the previous capture in place and the next build redoes it.

A source that did not change costs one cheap query and writes nothing:

- append-only: one aggregate (maximum cursor, rows below it, rows at it) equals the one
  recorded.
- keyed: the source's fingerprint (row count + sum of 64-bit row hashes, over the shadow's
  columns) equals the fingerprint recorded for the shadow, so the source and the shadow
  hold the same rows and a diff would find nothing. This assumes what the fingerprint of
  an undeclared source already assumes: two different multisets of rows with the same
  count do not have the same hash sum (odds of about 2^-64 per change). The recorded
  fingerprint always describes the shadow as it is: it is cleared before the shadow
  changes and written again after, in that order even where there are no transactions,
  so a crash leaves no fingerprint (and the next build diffs) rather than a stale one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.errors import ConfigError
from sqlorch.execution.statements import (
    changed_rows,
    columns_of,
    count_rows,
    create_change_log,
    create_table_as,
    drop_table,
    execute_create,
    insert_into,
    select_from,
    with_images,
)
from sqlorch.planning.key_match import null_safe_match
from sqlorch.project.model import SourceSpec
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
    RelationState,
    add_batch_statement,
    change_log,
    edge_table,
    save_relation_statements,
    shadow_table,
    work_table,
)

LOG = logging.getLogger(__name__)
_ROW_NUMBER = "_sqlorch_n"


@dataclass(frozen=True)
class Captured:
    batch: int | None  # the last new batch, if any
    kind: str = "delta"
    rows: int = 0


@dataclass(frozen=True)
class CursorMark:
    """Where a cursor capture stopped (stored as JSON in ``relations.cursor_hi``): the
    cursor column, its maximum captured value, and for append-only sources the number of
    rows below that value (NULL cursors included) and at it."""

    cursor: str
    hi: str | None
    below: int = 0
    at: int = 0

    def text(self) -> str:
        return json.dumps({"cursor": self.cursor, "hi": self.hi, "below": self.below, "at": self.at})

    @staticmethod
    def read(text: str | None) -> CursorMark | None:
        """None for a mark written by an older sqlorch (a bare value): recapture once."""
        try:
            data = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return CursorMark(data["cursor"], data["hi"], int(data.get("below", 0)), int(data.get("at", 0)))


@dataclass(frozen=True)
class _Source:
    """One declared source being captured: its current columns and where its state lives."""

    adapter: Adapter
    ref: TableRef
    spec: SourceSpec
    columns: dict[str, exp.DataType]
    batch: int

    @property
    def name(self) -> str:
        return str(self.ref)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    @property
    def key(self) -> list[str]:
        return list(self.spec.unique_key)

    @property
    def log(self) -> TableRef:
        return change_log(self.ref)

    @property
    def copy(self) -> TableRef:
        """The table that remembers captured rows: the shadow (keyed) or the edge (append-only)."""
        return edge_table(self.ref) if self.spec.append_only else shadow_table(self.ref)

    def types(self) -> dict[str, str]:
        return {name: kind.sql(dialect=self.adapter.dialect) for name, kind in self.columns.items()}

    def cursor_column(self, table: str | None = None) -> exp.Column:
        assert self.spec.cursor
        return exp.column(self.spec.cursor, table=table, quoted=True)

    def cursor_value(self, value: str) -> exp.Expr:
        assert self.spec.cursor
        return exp.cast(exp.Literal.string(value), self.columns[self.spec.cursor])

    def save(self, fingerprint: str | None, mark: CursorMark | None) -> None:
        state = RelationState(fingerprint, self.types(), self.key, mark.text() if mark else None)
        for statement in save_relation_statements(self.name, state):
            self.adapter.execute(statement)

    def record_batch(self, batch: int, kind: str, rows: int) -> None:
        self.adapter.execute(add_batch_statement(self.name, batch, kind, rows))

    def batch_rows(self, batch: int) -> int:
        return int(self.adapter.fetch(count_rows(self.log).where(_in_batch(batch)))[0][0])


def capture_source(
    adapter: Adapter,
    ref: TableRef,
    spec: SourceSpec | None,
    state: RelationState | None,
    next_batch: int,
    known: Mapping[TableRef, dict[str, exp.DataType]],
    full_refresh: bool = False,
) -> Captured | None:
    """Capture one source's changes. ``known`` holds the columns of the tables that exist
    (the source, its change log, shadow and edge), read by the caller in one catalog query.
    ``full_refresh`` recaptures a declared source whole (change log, shadow and watermark
    reset). Returns None when nothing was written: the source is missing or did not change."""
    columns = known.get(ref)
    if columns is None:
        return None  # the model reading it will fail with the warehouse's message
    if spec is None or not (spec.cursor or spec.unique_key):
        return capture_fingerprint(adapter, ref, state, next_batch, columns)
    _check_declared_columns(spec, columns)
    source = _Source(adapter, ref, spec, dict(columns), next_batch)
    reason = "--full-refresh" if full_refresh else _recapture_reason(source, state, known)
    if reason is not None:
        if state is not None:
            LOG.info("source %s: captured whole (%s)", source.name, reason)
        return _capture_whole(source, state)
    assert state is not None
    before = _captured_columns(known[source.log])
    followed = before != source.columns or _captured_columns(known[source.copy]) != source.columns
    if followed:
        _follow_columns(source, known)
    if spec.append_only:
        edge = _captured_columns(known[source.copy])
        return capture_append_only(source, state, [n for n in source.names if n in edge])
    return capture_keyed(source, state, trust_fingerprint=not followed)


def _check_declared_columns(spec: SourceSpec, columns: Mapping[str, exp.DataType]) -> None:
    for role, names in (("cursor", [spec.cursor] if spec.cursor else []), ("unique_key", list(spec.unique_key))):
        for name in names:
            if name not in columns:
                raise ConfigError(
                    f"source {spec.ref}: {role} column '{name}' is not a column of the table "
                    f"(its columns: {', '.join(columns)})",
                    path=spec.path,
                )


def _captured_columns(log_columns: Mapping[str, exp.DataType]) -> dict[str, exp.DataType]:
    return {name: kind for name, kind in log_columns.items() if name not in (BATCH_COLUMN, OLD_COLUMN)}


def _recapture_reason(
    source: _Source, state: RelationState | None, known: Mapping[TableRef, dict[str, exp.DataType]]
) -> str | None:
    """Why the source must be captured whole, if it must: nothing captured yet, another way
    of capturing it than last time, or a column whose type changed."""
    if state is None or source.log not in known or source.copy not in known:
        return "first capture"
    if state.key != source.key:
        return "unique_key changed"
    mark = CursorMark.read(state.cursor_hi) if source.spec.cursor else None
    if source.spec.cursor and (mark is None or mark.cursor != source.spec.cursor):
        return "cursor changed"
    before = _captured_columns(known[source.log])
    changed = [name for name, kind in source.columns.items() if name in before and before[name] != kind]
    if changed:
        return f"type of {', '.join(changed)} changed"
    return None


def _follow_columns(source: _Source, known: Mapping[TableRef, dict[str, exp.DataType]]) -> None:
    """Rebuild the change log and the shadow or edge with the source's columns: a column
    gone is dropped, a new one is NULL in what was captured before it existed. Each table
    is projected from its own columns (a crash between the two, where there are no
    transactions, leaves them different)."""
    adapter = source.adapter
    scratch = work_table(source.ref, "columns")
    with adapter.transaction():
        for table, extra in ((source.log, [BATCH_COLUMN, OLD_COLUMN]), (source.copy, [])):
            have = _captured_columns(known[table])
            if have == source.columns:
                continue
            LOG.info(
                "%s: columns added %s, dropped %s, following source %s",
                table,
                [name for name in source.columns if name not in have],
                [name for name in have if name not in source.columns],
                source.name,
            )
            projection = [
                exp.column(name, table="t", quoted=True)
                if name in have
                else exp.alias_(exp.cast(exp.null(), kind), name, quoted=True)
                for name, kind in source.columns.items()
            ]
            query = exp.select(*projection, *columns_of(extra, "t")).from_(table.to_table(alias="t"))
            execute_create(adapter, create_table_as(scratch, query))
            execute_create(adapter, create_table_as(table, select_from(scratch, [*source.names, *extra])))
        adapter.execute(drop_table(scratch))


def _capture_whole(source: _Source, state: RelationState | None) -> Captured:
    """Start over: an empty change log, a fresh shadow or edge, a ``full`` batch."""
    adapter, spec = source.adapter, source.spec
    with adapter.transaction():
        if state is not None and state.fingerprint is not None:
            _forget_fingerprint(adapter, source.name, state)
        execute_create(adapter, create_change_log(source.log, source.ref, source.names))
        mark = None
        if spec.append_only:
            mark = _stats(source, None)
            edge = select_from(source.ref, source.names, "s")
            at_hi = source.cursor_column("s").eq(source.cursor_value(mark.hi)) if mark.hi is not None else exp.false()
            execute_create(adapter, create_table_as(source.copy, edge.where(at_hi)))
            fingerprint = None
        else:
            if spec.cursor:
                mark = CursorMark(spec.cursor, _max_cursor(source))
            execute_create(adapter, create_table_as(source.copy, select_from(source.ref, source.names)))
            fingerprint = adapter.fingerprint(source.copy, source.names)
        source.save(fingerprint, mark)
        source.record_batch(source.batch, "full", 0)
    return Captured(batch=source.batch, kind="full")


def capture_fingerprint(
    adapter: Adapter, ref: TableRef, state: RelationState | None, batch: int, columns: Mapping[str, exp.DataType]
) -> Captured | None:
    """An undeclared source: any change of its rows or column types is a ``full`` batch."""
    fingerprint = adapter.fingerprint(ref)
    types = {name: kind.sql(dialect=adapter.dialect) for name, kind in columns.items()}
    if state is not None and state.fingerprint == fingerprint and state.columns == types:
        return None
    with adapter.transaction():
        for statement in save_relation_statements(str(ref), RelationState(fingerprint, types, None, None)):
            adapter.execute(statement)
        adapter.execute(add_batch_statement(str(ref), batch, "full", 0))
    return Captured(batch=batch, kind="full")


def _max_cursor(source: _Source) -> str | None:
    value = source.adapter.fetch(exp.select(exp.func("max", source.cursor_column())).from_(source.ref.to_table()))
    return None if value[0][0] is None else str(value[0][0])


def _count_if(condition: exp.Expr) -> exp.Expr:
    case = exp.Case(ifs=[exp.If(this=condition, true=exp.Literal.number(1))], default=exp.Literal.number(0))
    return exp.func("coalesce", exp.func("sum", case), exp.Literal.number(0))


def _stats(source: _Source, hi: str | None) -> CursorMark:
    """The source's maximum cursor and how many rows lie below ``hi`` (NULL cursors
    included) and at it; with ``hi`` None, below and at the maximum found."""
    cursor = source.cursor_column("s")
    if hi is None:
        top = exp.select(exp.func("max", source.cursor_column("m"))).from_(source.ref.to_table(alias="m")).subquery()
        bound: exp.Expr = top
    else:
        bound = source.cursor_value(hi)
    below = exp.or_(
        exp.LT(this=cursor.copy(), expression=bound.copy()), exp.Is(this=cursor.copy(), expression=exp.null())
    )
    query = exp.select(
        exp.func("max", cursor.copy()), _count_if(below), _count_if(cursor.copy().eq(bound.copy()))
    ).from_(source.ref.to_table(alias="s"))
    top_value, below_rows, at_rows = source.adapter.fetch(query)[0]
    assert source.spec.cursor
    return CursorMark(source.spec.cursor, None if top_value is None else str(top_value), int(below_rows), int(at_rows))


def _numbered(table: TableRef, names: list[str], compare: list[str], where: exp.Expr, alias: str) -> exp.Select:
    """``table``'s rows with a row number among identical rows (on ``compare``), so two
    multisets can be diffed with a NULL-safe anti-join on every engine."""
    keys = columns_of(compare, alias)
    number = exp.Window(
        this=exp.RowNumber(),
        partition_by=keys,
        order=exp.Order(expressions=[exp.Ordered(this=k.copy()) for k in keys]),
    )
    return (
        exp.select(*columns_of(names, alias), exp.alias_(number, _ROW_NUMBER, quoted=True))
        .from_(table.to_table(alias=alias))
        .where(where)
    )


def _unmatched(left: exp.Select, right: exp.Select, names: list[str], compare: list[str]) -> exp.Select:
    """Rows of ``left`` (numbered) with no identical row of the same number in ``right``."""
    match = (
        exp.select(exp.Literal.number(1))
        .from_(right.subquery("b"))
        .where(null_safe_match("a", "b", [*compare, _ROW_NUMBER]))
    )
    return exp.select(*columns_of(names, "a")).from_(left.subquery("a")).where(exp.not_(exp.Exists(this=match)))


def capture_append_only(source: _Source, state: RelationState, compare: list[str]) -> Captured | None:
    """New rows of an append-only source; see the module docstring for what is checked.
    ``compare``: the columns ties are compared on (those the edge had before a column was
    added, whose values there are known)."""
    adapter, names = source.adapter, source.names
    mark = CursorMark.read(state.cursor_hi)
    assert mark is not None
    now = _stats(source, mark.hi)
    if now.hi == mark.hi and now.below == mark.below and now.at == mark.at and compare == names:
        return None
    at_hi = source.cursor_column("s").eq(source.cursor_value(mark.hi)) if mark.hi is not None else exp.false()
    edge = _numbered(source.copy, names, compare, exp.true(), "s")
    taken_at_hi = _numbered(source.ref, names, compare, at_hi, "s")
    if now.below != mark.below or now.at < mark.at or adapter.fetch(_unmatched(edge, taken_at_hi, names, compare)):
        LOG.warning(
            "source %s: rows at or below the last captured %s changed: not append-only; captured whole",
            source.name,
            mark.cursor,
        )
        return _capture_whole(source, state)
    past = select_from(source.ref, names, "s")
    if mark.hi is not None:
        past = past.where(exp.GT(this=source.cursor_column("s"), expression=source.cursor_value(mark.hi)))
    if now.hi is not None:
        past = past.where(exp.LTE(this=source.cursor_column("s"), expression=source.cursor_value(now.hi)))
    else:
        past = past.where(exp.false())
    batch, log = source.batch, source.log
    with adapter.transaction():
        adapter.execute(exp.delete(log.to_table(), where=exp.column(BATCH_COLUMN, quoted=True) >= batch))
        all_columns = [*names, BATCH_COLUMN, OLD_COLUMN]
        adapter.execute(insert_into(log, all_columns, with_images(past, names, batch, False)))
        if mark.hi is not None:
            ties = _unmatched(taken_at_hi, edge, names, compare)
            adapter.execute(insert_into(log, all_columns, with_images(ties, names, batch, False)))
        rows = source.batch_rows(batch)
        if rows:
            source.record_batch(batch, "append", rows)
        new_mark = _move_edge(source, mark, now.hi) if rows else mark
        if compare != names and new_mark.hi is not None:
            # The edge got the new columns as NULL: take their values from the source, so
            # that the next capture compares ties on every column.
            at_new = source.cursor_column("s").eq(source.cursor_value(new_mark.hi))
            execute_create(adapter, create_table_as(source.copy, select_from(source.ref, names, "s").where(at_new)))
        source.save(None, new_mark)
    return Captured(batch=batch if rows else None, kind="append", rows=rows)


def _move_edge(source: _Source, mark: CursorMark, hi: str | None) -> CursorMark:
    """Make the edge hold the rows captured at the new maximum ``hi``, and count the rows
    captured so far below and at it, from what this batch took (not from the source, which
    may have moved on meanwhile where there are no transactions)."""
    adapter, names, log = source.adapter, source.names, source.log
    assert hi is not None and source.spec.cursor
    cursor = source.cursor_column("c")
    taken = exp.select(
        _count_if(exp.LT(this=cursor, expression=source.cursor_value(hi))),
        _count_if(cursor.copy().eq(source.cursor_value(hi))),
    )
    below, at = adapter.fetch(taken.from_(log.to_table(alias="c")).where(_in_batch(source.batch, "c")))[0]
    at_hi = changed_rows(log, names, source.batch - 1, source.batch).where(cursor.copy().eq(source.cursor_value(hi)))
    if hi == mark.hi:
        adapter.execute(insert_into(source.copy, names, at_hi))
        return replace(mark, at=mark.at + int(at))
    execute_create(adapter, create_table_as(source.copy, at_hi))
    return CursorMark(source.spec.cursor, hi, mark.below + mark.at + int(below), int(at))


def capture_keyed(source: _Source, state: RelationState, trust_fingerprint: bool) -> Captured | None:
    """A keyed source diffed against its shadow; narrowed by the cursor when there is one,
    then checked against the source's fingerprint and diffed whole when they differ.
    ``trust_fingerprint`` is False when the shadow was just rebuilt with other columns."""
    adapter, names, key = source.adapter, source.names, source.key
    source_fingerprint = adapter.fingerprint(source.ref, names)
    if trust_fingerprint and state.fingerprint is not None and source_fingerprint == state.fingerprint:
        return None
    mark = CursorMark.read(state.cursor_hi) if source.spec.cursor else None
    hi = _max_cursor(source) if source.spec.cursor else None
    if _key_repeats(adapter, source.ref, key) or _key_repeats(adapter, source.copy, key):
        # A key diff cannot see a second copy of a row, nor its removal: while the declared
        # key repeats (in the source now, or in the copy taken last time), each change is
        # captured whole and the source's readers rebuild, which is exact either way.
        LOG.warning(
            "source %s: unique_key (%s) has repeated values; its readers are rebuilt in full until it is unique",
            source.name,
            ", ".join(key),
        )
        return _capture_whole(source, state)
    candidates = select_from(source.ref, names, "s")
    narrowed = mark is not None and mark.hi is not None
    if mark is not None and mark.hi is not None:
        # ">=": a row stamped with the last captured value may have arrived since; the
        # shadow comparison drops the ones taken already.
        candidates = candidates.where(exp.GTE(this=source.cursor_column("s"), expression=source.cursor_value(mark.hi)))
    if hi is not None:
        candidates = candidates.where(exp.LTE(this=source.cursor_column("s"), expression=source.cursor_value(hi)))
    batch, total = source.batch, 0
    with adapter.transaction():
        # Leftovers of a capture interrupted on a warehouse without transactions.
        adapter.execute(exp.delete(source.log.to_table(), where=exp.column(BATCH_COLUMN, quoted=True) >= batch))
        if state.fingerprint is not None:
            _forget_fingerprint(adapter, source.name, state)
        rows = _diff_batch(source, candidates, batch)
        total += rows
        shadow_fingerprint = adapter.fingerprint(source.copy, names)
        if narrowed and shadow_fingerprint != source_fingerprint:
            # Rows changed without their cursor moving past the last capture (or with a
            # NULL cursor), or the shadow was changed by hand: diff every key.
            LOG.warning(
                "source %s: rows changed without their %s moving past the last capture; diffed by key in full",
                source.name,
                source.spec.cursor,
            )
            batch = batch + 1 if rows else batch
            total += _diff_batch(source, select_from(source.ref, names, "s"), batch)
            shadow_fingerprint = adapter.fingerprint(source.copy, names)
        source.save(shadow_fingerprint, CursorMark(mark.cursor, hi or mark.hi) if mark is not None else None)
    return Captured(batch=batch if total else None, kind="delta", rows=total)


def _diff_batch(source: _Source, candidates: exp.Select, batch: int) -> int:
    """Diff ``candidates`` against the shadow into ``batch``, record it and update the
    shadow; returns the rows written to the change log."""
    _diff_keyed(source.adapter, source.ref, source.key, source.names, candidates, batch)
    rows = source.batch_rows(batch)
    if rows:
        # Order matters where there are no transactions: the batch is recorded before the
        # shadow and the watermark move past it, so a crash can repeat a batch (consumers
        # replace keys, which is idempotent) but never lose one.
        source.record_batch(batch, "delta", rows)
        _refresh_shadow(source.adapter, source.ref, source.key, source.names, batch)
    return rows


def _in_batch(batch: int, table: str | None = None) -> exp.Expr:
    return exp.column(BATCH_COLUMN, table=table, quoted=True).eq(batch)


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


def _diff_keyed(
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
