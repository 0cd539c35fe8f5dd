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
  shadow copy by key and value give new images, old images and deletes. Without a cursor
  every row is compared. A cursor promises that every insert and update moves the row's
  cursor past the last captured value; deletes cannot move a cursor and are allowed. So the
  capture first takes only the rows past the last captured value (new images) and the
  shadow rows of their keys (old images): no scan of the rest of the source beyond its
  fingerprint. The promise is checked, not trusted: the shadow as that diff would leave it
  must have the source's fingerprint. Fingerprints are sums (and XORs) over rows, so that
  one is the recorded shadow's moved by the rows the diff replaces and adds
  (``Adapter.fingerprint_parts``): the few rows are hashed, not the shadow (a query of the
  whole refreshed shadow only where no recorded fingerprint describes it). If it does not, the rows from the last
  value on (ties: rows stamped with it after it was captured) and the shadow's keys gone
  from the source (deletes) are taken instead, checked the same way; if that does not
  account for the change either (a row changed without its cursor moving, a NULL cursor, a
  shadow changed behind sqlorch's back), every row is diffed by key. Each is one batch.
- ``capture_fingerprint`` (nothing declared): an order-independent fingerprint plus the
  column types; a change is a ``full`` batch.

Before capturing, the source's columns are compared with its change log's. A changed type
(or a changed cursor, key or mode) recaptures the source whole: the old images of its
change log and shadow cannot be compared exactly with values of the new type. Added,
dropped or renamed columns are followed instead: change log, shadow and edge are rebuilt
with the source's columns (NULL where a column is new), and the diff that follows captures
every row whose values differ (e.g. a column added with a default).

A keyed source keeps and hashes only its key, its cursor and the columns its readers and
audits name (``captured_columns``): a change, or a type change, of another column changes
no model's rows and is not seen. A model that starts to name a column the source already
had recaptures it whole (``_newly_read``); a column no longer named is dropped from change
log and shadow as a dropped column is.

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

``predict_capture`` is the read-only twin of ``capture_source`` that ``plan`` runs: the same
decisions (``_recapture_reason``, ``append_only_changes``, ``keyed_changes``, the
fingerprint test) and the same change queries, counted with a SELECT instead of written.
Where capture would first rebuild a copy with followed columns, the prediction reads the
copy through the same projection (``_followed``). The keyed capture decides how narrowly to
diff before it writes anything (``keyed_changes`` fingerprints the shadow as each diff
would leave it, as a query: ``_refreshed``), so plan and build take the same branch. So a
plan's numbers are the batches the next build records, as long as the sources do not
change in between.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sqlglot import exp

from sqlorch.adapters.base import Adapter, fingerprint_moved
from sqlorch.errors import ConfigError
from sqlorch.execution import buckets as by_bucket
from sqlorch.execution.statements import (
    Rows,
    changed_rows,
    columns_of,
    count_rows,
    create_change_log,
    create_table_as,
    drop_table,
    execute_create,
    from_rows,
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
    bucket_table,
    change_log,
    edge_table,
    save_relation_statements,
    shadow_table,
    work_table,
)

LOG = logging.getLogger(__name__)
_ROW_NUMBER = "_sqlorch_n"

# ``Rows`` here: the copy as it would be once its columns are followed (the prediction
# never writes), or the shadow as a diff would leave it.


@dataclass(frozen=True)
class Captured:
    """The batches one capture of a source recorded, or, from ``predict_capture``, would
    record: ``(batch, kind, rows)`` each, ``kind`` as in ``_sqlorch.batches`` (``append``,
    ``delta``, ``full``) and ``rows`` the change-log rows (0 for ``full``)."""

    batches: tuple[tuple[int, str, int], ...] = ()
    reason: str = ""  # why, in a few words: what changed, or why the source is captured whole

    @property
    def rows(self) -> int:
        return sum(rows for _, _, rows in self.batches)

    @property
    def kind(self) -> str:
        """``none``, ``append`` (only new rows), ``delta`` or ``full`` (consumers rebuild)."""
        kinds = {kind for _, kind, _ in self.batches}
        if not kinds:
            return "none"
        if "full" in kinds:
            return "full"
        return "append" if kinds == {"append"} else "delta"


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
    # every column of the source; ``columns`` are those captured (``captured_columns``)
    every: Mapping[str, exp.DataType] | None = None

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
        """The source's column types, all of them (``_newly_read`` tells by them a column
        the source had at its last capture from one it gained since)."""
        every = self.every if self.every is not None else self.columns
        return {name: kind.sql(dialect=self.adapter.dialect) for name, kind in every.items()}

    def cursor_column(self, table: str | None = None) -> exp.Column:
        assert self.spec.cursor
        return exp.column(self.spec.cursor, table=table, quoted=True)

    def cursor_value(self, value: str) -> exp.Expr:
        assert self.spec.cursor
        return exp.cast(exp.Literal.string(value), self.columns[self.spec.cursor])

    @property
    def buckets(self) -> TableRef:
        """A keyed source's bucket fingerprints (``execution/buckets.py``)."""
        return bucket_table(self.ref)

    def save(self, fingerprint: str | None, mark: CursorMark | None, buckets: int | None = None) -> None:
        state = RelationState(fingerprint, self.types(), self.key, mark.text() if mark else None, buckets)
        for statement in save_relation_statements(self.name, state):
            self.adapter.execute(statement)

    def record_batch(self, batch: int, kind: str, rows: int) -> None:
        self.adapter.execute(add_batch_statement(self.name, batch, kind, rows))

    def batch_rows(self, batch: int) -> int:
        return int(self.adapter.fetch(count_rows(self.log).where(_in_batch(batch)))[0][0])


def _select(rows: Rows, names: list[str], alias: str) -> exp.Select:
    return exp.select(*columns_of(names, alias)).from_(from_rows(rows, alias))


def _count(adapter: Adapter, query: exp.Select) -> int:
    return int(adapter.fetch(exp.select(exp.func("count", exp.Star())).from_(query.copy().subquery("q")))[0][0])


def capture_source(
    adapter: Adapter,
    ref: TableRef,
    spec: SourceSpec | None,
    state: RelationState | None,
    next_batch: int,
    known: Mapping[TableRef, dict[str, exp.DataType]],
    full_refresh: bool = False,
    read: Callable[[], frozenset[str] | None] = lambda: None,
) -> Captured | None:
    """Capture one source's changes. ``known`` holds the columns of the tables that exist
    (the source, its change log, shadow and edge), read by the caller in one catalog query.
    ``full_refresh`` recaptures a declared source whole (change log, shadow and watermark
    reset). ``read``: the columns the models reading the source and its audits name
    (``columns_read``; None: any), which a keyed source's capture keeps
    (``captured_columns``). Returns None when nothing was written: the source is missing or
    did not change."""
    columns = known.get(ref)
    if columns is None:
        return None  # the model reading it will fail with the warehouse's message
    if spec is None or not (spec.cursor or spec.unique_key):
        return capture_fingerprint(adapter, ref, state, next_batch, columns)
    _check_declared_columns(spec, columns)
    source = _Source(adapter, ref, spec, captured_columns(spec, columns, read), next_batch, dict(columns))
    reason = "--full-refresh" if full_refresh else _recapture_reason(source, state, known)
    if reason is not None:
        if state is not None:
            LOG.info("source %s: captured whole (%s)", source.name, reason)
        return _capture_whole(source, state, reason)
    assert state is not None
    followed = _followed_tables(source, known)
    if followed:
        _follow_columns(source, known)
    if spec.append_only:
        return _noting(capture_append_only(source, state, _compared(source, known)), followed)
    return _noting(capture_keyed(source, state, trust_fingerprint=not followed), followed)


def predict_capture(
    adapter: Adapter,
    ref: TableRef,
    spec: SourceSpec | None,
    state: RelationState | None,
    next_batch: int,
    known: Mapping[TableRef, dict[str, exp.DataType]],
    full_refresh: bool = False,
    read: Callable[[], frozenset[str] | None] = lambda: None,
) -> Captured | None:
    """What ``capture_source`` would record now, read-only (``plan``): the same decisions and
    change queries, counted instead of written. None when the source is missing."""
    columns = known.get(ref)
    if columns is None:
        return None
    if spec is None or not (spec.cursor or spec.unique_key):
        if fingerprint_change(adapter, ref, state, columns) is None:
            return Captured()
        return Captured(((next_batch, "full", 0),), _fingerprint_reason(state))
    _check_declared_columns(spec, columns)
    source = _Source(adapter, ref, spec, captured_columns(spec, columns, read), next_batch, dict(columns))
    reason = "--full-refresh" if full_refresh else _recapture_reason(source, state, known)
    if reason is not None:
        return Captured(((next_batch, "full", 0),), f"captured whole: {reason}")
    assert state is not None
    followed = _followed_tables(source, known)
    have = _captured_columns(known[source.copy])
    copy: Rows = source.copy if have == source.columns else _followed(source.copy, have, source.columns, [])
    if spec.append_only:
        predicted = predict_append_only(source, state, copy, _compared(source, known))
    else:
        predicted = predict_keyed(source, state, copy, trust_fingerprint=not followed)
    return _noting(predicted, followed)


def _noting(captured: Captured | None, followed: str) -> Captured | None:
    """``captured`` with the columns followed before it said first in its reason."""
    if captured is None or not followed:
        return captured
    return replace(captured, reason="; ".join(filter(None, [followed, captured.reason])))


def _check_declared_columns(spec: SourceSpec, columns: Mapping[str, exp.DataType]) -> None:
    for role, names in (("cursor", [spec.cursor] if spec.cursor else []), ("unique_key", list(spec.unique_key))):
        for name in names:
            if name not in columns:
                raise ConfigError(
                    f"source {spec.ref}: {role} column '{name}' is not a column of the table "
                    f"(its columns: {', '.join(columns)})",
                    path=spec.path,
                )


def captured_columns(
    spec: SourceSpec | None, columns: Mapping[str, exp.DataType], read: Callable[[], frozenset[str] | None]
) -> dict[str, exp.DataType]:
    """The columns of a source that its capture keeps (change log, shadow) and hashes: for a
    keyed source, its key, its cursor and the columns named by the models reading it or its
    audits (``read``, ``columns_read``); every column where one of them may read a column it
    does not name (``read`` None), and for an append-only source (its ties are compared on
    every column). A column no model names cannot change a model's rows, so its changes
    need not be seen: at TPC-H sf 1, ``l_comment`` was 70% of the cost of hashing lineitem.
    A model that starts to name one recaptures the source whole (``_newly_read``)."""
    if spec is None or spec.append_only or not spec.unique_key:
        return dict(columns)
    named = read()
    if named is None:
        return dict(columns)
    kept = named | {name.lower() for name in spec.unique_key} | ({spec.cursor.lower()} if spec.cursor else set())
    return {name: kind for name, kind in columns.items() if name.lower() in kept}


def _captured_columns(log_columns: Mapping[str, exp.DataType]) -> dict[str, exp.DataType]:
    return {name: kind for name, kind in log_columns.items() if name not in (BATCH_COLUMN, OLD_COLUMN)}


def _recapture_reason(
    source: _Source, state: RelationState | None, known: Mapping[TableRef, dict[str, exp.DataType]]
) -> str | None:
    """Why the source must be captured whole, if it must: nothing captured yet, another way
    of capturing it than last time, a column newly read, or a captured column whose type
    changed (every captured column is one a model reads, or the key or cursor)."""
    if state is None or source.log not in known or source.copy not in known:
        return "first capture"
    if state.key != source.key:
        return "unique_key changed"
    newly = _newly_read(source, state, known)
    if newly:
        return f"column{'s' if len(newly) > 1 else ''} newly read by a model: {', '.join(newly)}"
    mark = CursorMark.read(state.cursor_hi) if source.spec.cursor else None
    if source.spec.cursor and (mark is None or mark.cursor != source.spec.cursor):
        return "cursor changed"
    retyped = _retyped(source, _captured_columns(known[source.log]))
    return ", ".join(retyped.values()) if retyped else None


def _newly_read(source: _Source, state: RelationState, known: Mapping[TableRef, dict[str, exp.DataType]]) -> list[str]:
    """The captured columns that the change log or the copy lack though the source had them
    at its last capture (``_Source.types``): no model read them then, so their changes were
    not captured, and the old images a follow would give them (NULL) are not their values.
    The source is captured whole instead, and its readers rebuild once. A column the source
    gained since is followed (``_followed_tables``): it had no old values."""
    had = state.columns or {}
    log, copy = _captured_columns(known[source.log]), _captured_columns(known[source.copy])
    return [name for name in source.columns if name in had and (name not in log or name not in copy)]


def _retyped(source: _Source, have: Mapping[str, exp.DataType]) -> dict[str, str]:
    """The columns of ``have`` (a change log's or copy's) whose type the source changed,
    each with ``column name OLD -> NEW``."""
    dialect = source.adapter.dialect
    return {
        name: f"column {name} {have[name].sql(dialect=dialect)} -> {kind.sql(dialect=dialect)}"
        for name, kind in source.columns.items()
        if name in have and have[name] != kind
    }


def _followed_tables(source: _Source, known: Mapping[TableRef, dict[str, exp.DataType]]) -> str:
    """Which captured columns the source gained, lost (or no model reads any more) since its
    change log or copy was made, or that one of them holds with another type (a follow
    interrupted between the two) ("" when none): both are rebuilt with the captured columns
    before the capture."""
    log, copy = _captured_columns(known[source.log]), _captured_columns(known[source.copy])
    if log == source.columns and copy == source.columns:
        return ""
    every = source.every if source.every is not None else source.columns
    added = [name for name in source.columns if name not in log]
    dropped = [name for name in log if name not in every]
    unread = [name for name in {**log, **copy} if name in every and name not in source.columns]
    retyped = {**_retyped(source, copy), **_retyped(source, log)}
    parts = [f"columns added: {', '.join(added)}" if added else "", f"dropped: {', '.join(dropped)}" if dropped else ""]
    parts.append(f"no longer read by a model: {', '.join(unread)}" if unread else "")
    parts.append(", ".join(retyped.values()))
    return "; ".join(filter(None, parts)) or "columns followed"


def _compared(source: _Source, known: Mapping[TableRef, dict[str, exp.DataType]]) -> list[str]:
    """The columns an append-only source's ties are compared on: those its edge had before
    a column was added (whose values there are known)."""
    edge = _captured_columns(known[source.copy])
    return [name for name in source.names if name in edge]


def _followed(
    table: TableRef, have: Mapping[str, exp.DataType], columns: Mapping[str, exp.DataType], extra: list[str]
) -> exp.Select:
    """``table``'s rows with ``columns``: a column it lacks is NULL, one gone is left out,
    one of another type cast to the new one."""

    def value(name: str, kind: exp.DataType) -> exp.Expr:
        column = exp.column(name, table="t", quoted=True)
        if name in have and have[name] == kind:
            return column
        return exp.alias_(exp.cast(column if name in have else exp.null(), kind), name, quoted=True)

    projection = [value(name, kind) for name, kind in columns.items()]
    return exp.select(*projection, *columns_of(extra, "t")).from_(table.to_table(alias="t"))


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
                "%s: columns added %s, dropped %s, retyped %s, following source %s",
                table,
                [name for name in source.columns if name not in have],
                [name for name in have if name not in source.columns],
                list(_retyped(source, have).values()),
                source.name,
            )
            execute_create(adapter, create_table_as(scratch, _followed(table, have, source.columns, extra)))
            execute_create(adapter, create_table_as(table, select_from(scratch, [*source.names, *extra])))
        adapter.execute(drop_table(scratch))


def _capture_whole(source: _Source, state: RelationState | None, reason: str) -> Captured:
    """Start over: an empty change log, a fresh shadow or edge, a ``full`` batch."""
    adapter, spec = source.adapter, source.spec
    with adapter.transaction():
        if state is not None:
            _forget_fingerprint(adapter, source.name, state)
        execute_create(adapter, create_change_log(source.log, source.ref, source.names))
        mark, buckets = None, None
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
            assert fingerprint is not None
            buckets = by_bucket.bucket_count(_fingerprint_rows(fingerprint))
            execute_create(
                adapter,
                by_bucket.rebuild_statement(adapter, source.buckets, source.copy, source.names, source.key, buckets),
            )
        source.save(fingerprint, mark, buckets)
        source.record_batch(source.batch, "full", 0)
    return Captured(((source.batch, "full", 0),), f"captured whole: {reason}")


def fingerprint_change(
    adapter: Adapter, ref: TableRef, state: RelationState | None, columns: Mapping[str, exp.DataType]
) -> RelationState | None:
    """An undeclared source's new state (fingerprint and column types), None if unchanged."""
    fingerprint = adapter.fingerprint(ref)
    types = {name: kind.sql(dialect=adapter.dialect) for name, kind in columns.items()}
    if state is not None and state.fingerprint == fingerprint and state.columns == types:
        return None
    return RelationState(fingerprint, types, None, None)


def _fingerprint_reason(state: RelationState | None) -> str:
    if state is None:
        return "first capture"
    return "rows or column types changed; no cursor or unique_key declared: consumers rebuild"


def capture_fingerprint(
    adapter: Adapter, ref: TableRef, state: RelationState | None, batch: int, columns: Mapping[str, exp.DataType]
) -> Captured | None:
    """An undeclared source: any change of its rows or column types is a ``full`` batch."""
    changed = fingerprint_change(adapter, ref, state, columns)
    if changed is None:
        return None
    with adapter.transaction():
        for statement in save_relation_statements(str(ref), changed):
            adapter.execute(statement)
        adapter.execute(add_batch_statement(str(ref), batch, "full", 0))
    return Captured(((batch, "full", 0),), _fingerprint_reason(state))


def _max_cursor(source: _Source) -> str | None:
    value = source.adapter.fetch(exp.select(exp.func("max", source.cursor_column())).from_(source.ref.to_table()))
    return None if value[0][0] is None else str(value[0][0])


def _count_if(condition: exp.Expr) -> exp.Expr:
    case = exp.Case(ifs=[exp.If(this=condition, true=exp.Literal.number(1))], default=exp.Literal.number(0))
    return exp.func("coalesce", exp.func("sum", case), exp.Literal.number(0))


def _stats(source: _Source, hi: str | None) -> CursorMark:
    """The source's maximum cursor and how many rows lie below ``hi`` (NULL cursors
    included) and at it; with ``hi`` None, below and at the maximum found.

    With ``hi`` known, the rows below are all rows less those at or past it, so the query
    reads only rows at or past ``hi``: an engine with min/max statistics per block of rows
    (DuckDB's zonemaps, BigQuery's and Snowflake's partition pruning) skips the rest of an
    append-only table, whose blocks hold rows in cursor order. 50M events: 0.6 s to 0.002 s.
    Should no row be left at or past ``hi`` the maximum reads NULL and none is at ``hi``:
    the rows at it vanished, which is no append (``append_only_changes``) either way."""
    cursor = source.cursor_column("s")
    if hi is None:
        top = exp.select(exp.func("max", source.cursor_column("m"))).from_(source.ref.to_table(alias="m")).subquery()
        below = exp.or_(
            exp.LT(this=cursor.copy(), expression=top.copy()), exp.Is(this=cursor.copy(), expression=exp.null())
        )
        query = exp.select(
            exp.func("max", cursor.copy()), _count_if(below), _count_if(cursor.copy().eq(top.copy()))
        ).from_(source.ref.to_table(alias="s"))
    else:
        bound = source.cursor_value(hi)
        every = exp.select(exp.Count(this=exp.Star())).from_(source.ref.to_table(alias="t")).subquery()
        query = (
            exp.select(
                exp.func("max", cursor.copy()),
                exp.Sub(this=every, expression=exp.Count(this=exp.Star())),
                _count_if(cursor.copy().eq(bound.copy())),
            )
            .from_(source.ref.to_table(alias="s"))
            .where(exp.GTE(this=cursor.copy(), expression=bound.copy()))
        )
    top_value, below_rows, at_rows = source.adapter.fetch(query)[0]
    assert source.spec.cursor
    return CursorMark(source.spec.cursor, None if top_value is None else str(top_value), int(below_rows), int(at_rows))


def _numbered(rows: Rows, names: list[str], compare: list[str], where: exp.Expr, alias: str) -> exp.Select:
    """``rows`` with a row number among identical rows (on ``compare``), so two multisets
    can be diffed with a NULL-safe anti-join on every engine."""
    keys = columns_of(compare, alias)
    number = exp.Window(
        this=exp.RowNumber(),
        partition_by=keys,
        order=exp.Order(expressions=[exp.Ordered(this=k.copy()) for k in keys]),
    )
    return (
        exp.select(*columns_of(names, alias), exp.alias_(number, _ROW_NUMBER, quoted=True))
        .from_(from_rows(rows, alias))
        .where(where)
    )


def _unmatched(left: exp.Select, right: exp.Select, names: list[str], compare: list[str]) -> exp.Select:
    """Rows of ``left`` (numbered) with no identical row of the same number in ``right``."""
    match = (
        exp.select(exp.Literal.number(1))
        .from_(right.subquery("b"))
        .where(null_safe_match("a", "b", [*compare, _ROW_NUMBER], hashable=True))
    )
    return exp.select(*columns_of(names, "a")).from_(left.subquery("a")).where(exp.not_(exp.Exists(this=match)))


@dataclass(frozen=True)
class Appended:
    """What an append-only capture takes: the rows past the last captured cursor value up
    to the current maximum, and the ties at the last value not taken yet (None without one)."""

    mark: CursorMark  # as recorded by the last capture
    now: CursorMark  # the source's statistics against it
    past: exp.Select
    ties: exp.Select | None


def append_only_changes(source: _Source, state: RelationState, edge: Rows, compare: list[str]) -> Appended | str | None:
    """The change queries of an append-only source, or why it must be captured whole (it
    is no longer append-only), or None when it did not change. Reads only. ``edge``: the
    rows taken at the last cursor value; ``compare``: the columns ties are compared on."""
    names = source.names
    mark = CursorMark.read(state.cursor_hi)
    assert mark is not None
    now = _stats(source, mark.hi)
    if now.hi == mark.hi and now.below == mark.below and now.at == mark.at and compare == names:
        return None
    at_hi = source.cursor_column("s").eq(source.cursor_value(mark.hi)) if mark.hi is not None else exp.false()
    numbered_edge = _numbered(edge, names, compare, exp.true(), "s")
    taken_at_hi = _numbered(source.ref, names, compare, at_hi, "s")
    if (
        now.below != mark.below
        or now.at < mark.at
        or source.adapter.fetch(_unmatched(numbered_edge, taken_at_hi, names, compare).limit(1))
    ):
        return f"rows at or below the last captured {mark.cursor} changed: not append-only"
    past = select_from(source.ref, names, "s")
    if mark.hi is not None:
        past = past.where(exp.GT(this=source.cursor_column("s"), expression=source.cursor_value(mark.hi)))
    if now.hi is not None:
        past = past.where(exp.LTE(this=source.cursor_column("s"), expression=source.cursor_value(now.hi)))
    else:
        past = past.where(exp.false())
    ties = _unmatched(taken_at_hi, numbered_edge, names, compare) if mark.hi is not None else None
    return Appended(mark, now, past, ties)


def capture_append_only(source: _Source, state: RelationState, compare: list[str]) -> Captured | None:
    """New rows of an append-only source; see the module docstring for what is checked.
    ``compare``: the columns ties are compared on (those the edge had before a column was
    added, whose values there are known)."""
    adapter, names = source.adapter, source.names
    found = append_only_changes(source, state, source.copy, compare)
    if found is None:
        return None
    if isinstance(found, str):
        LOG.warning("source %s: %s; captured whole", source.name, found)
        return _capture_whole(source, state, found)
    batch, log = source.batch, source.log
    with adapter.transaction():
        adapter.execute(exp.delete(log.to_table(), where=exp.column(BATCH_COLUMN, quoted=True) >= batch))
        all_columns = [*names, BATCH_COLUMN, OLD_COLUMN]
        adapter.execute(insert_into(log, all_columns, with_images(found.past, names, batch, False)))
        if found.ties is not None:
            adapter.execute(insert_into(log, all_columns, with_images(found.ties, names, batch, False)))
        rows = source.batch_rows(batch)
        if rows:
            source.record_batch(batch, "append", rows)
        new_mark = _move_edge(source, found.mark, found.now.hi) if rows else found.mark
        if compare != names and new_mark.hi is not None:
            # The edge got the new columns as NULL: take their values from the source, so
            # that the next capture compares ties on every column.
            at_new = source.cursor_column("s").eq(source.cursor_value(new_mark.hi))
            execute_create(adapter, create_table_as(source.copy, select_from(source.ref, names, "s").where(at_new)))
        source.save(None, new_mark)
    return Captured(((batch, "append", rows),) if rows else (), _appended_reason(rows))


def predict_append_only(source: _Source, state: RelationState, edge: Rows, compare: list[str]) -> Captured:
    """``capture_append_only``, counted: the batch it would record."""
    found = append_only_changes(source, state, edge, compare)
    if found is None:
        return Captured()
    if isinstance(found, str):
        return Captured(((source.batch, "full", 0),), f"captured whole: {found}")
    rows = _count(source.adapter, found.past)
    if found.ties is not None:
        rows += _count(source.adapter, found.ties)
    return Captured(((source.batch, "append", rows),) if rows else (), _appended_reason(rows))


def _appended_reason(rows: int) -> str:
    return f"{rows} new row{'' if rows == 1 else 's'}" if rows else ""


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


_NO_CURSOR = "rows changed without their cursor moving past the last capture"
_WHOLE_DIFF = f"{_NO_CURSOR}; diffed by key in full"
_BUCKET_DIFF = f"{_NO_CURSOR}; diffed by key in the buckets whose fingerprint changed"
_FROM_LAST = "deletes or rows stamped with the last captured cursor value: compared from that value on"


@dataclass(frozen=True)
class KeyedDiff:
    """The one batch a keyed capture records: the source rows compared with the shadow,
    whether the shadow's keys gone from the source are taken as deletes, and whether the
    cursor failed to account for the change (every row compared)."""

    candidates: exp.Select
    few: bool  # the candidates are the rows the cursor selects, a few rows of a large source
    deletes: bool
    how: str  # where the cursor alone did not account for the change: the path taken, in words
    # the source's, over the captured columns; None until ``_take_buckets`` gives it where the
    # row count showed a change (``_count_moved``)
    fingerprint: str | None
    mark: CursorMark | None  # as recorded by the last capture
    hi: str | None  # the source's maximum cursor now
    # Where only some buckets of keys are diffed (``execution/buckets.py``): their count, and
    # the query of the buckets whose fingerprint changed.
    buckets: int | None = None
    chosen: exp.Query | None = None
    # The source's and the shadow's rows of those buckets, copied once by the capture into
    # scratch tables (every statement of the diff then reads a few rows, not the tables).
    taken: tuple[Rows, Rows] | None = None

    def diffed(self, source: _Source) -> exp.Select:
        """The candidates, in the chosen buckets only where buckets are diffed."""
        if self.buckets is None or self.chosen is None:
            return self.candidates
        return _select(self.source_rows(source), source.names, "s")

    def source_rows(self, source: _Source) -> Rows:
        """The source's rows in the chosen buckets, or all of them."""
        return self.taken[0] if self.taken is not None else self._narrowed(source, source.ref, "s")

    def shadow_rows(self, source: _Source, shadow: Rows) -> Rows:
        """``shadow``'s rows in the chosen buckets, or all of them."""
        return self.taken[1] if self.taken is not None else self._narrowed(source, shadow, "h")

    def _narrowed(self, source: _Source, rows: Rows, alias: str) -> Rows:
        if self.buckets is None or self.chosen is None:
            return rows
        return _select(rows, source.names, alias).where(
            by_bucket.in_buckets(source.adapter, source.key, alias, self.buckets, self.chosen)
        )


def keyed_changes(source: _Source, state: RelationState, shadow: Rows, trust_fingerprint: bool) -> KeyedDiff | None:
    """What a keyed capture diffs, or None when its fingerprint says the source did not
    change. Reads only, so ``plan`` predicts with it what ``build`` does.

    With a cursor the narrowest form that accounts for the whole change is taken: each is
    checked by fingerprinting the shadow as the diff would leave it (``_refreshed``, a
    query) against the source, so what is recorded is exact whatever the source did. In
    order: rows past the last captured cursor value (inserts and updates kept the contract;
    their keys' old images from the shadow); then rows from that value on, ties included,
    plus the shadow's keys gone from the source (deletes, and rows stamped with the last
    value after it was captured); then every row, or where the shadow's bucket fingerprints
    are kept, the rows of the buckets whose fingerprint changed. Only the last needs the
    key to be unique in what it compares (``repeated_key``); the narrow forms are checked
    whole.
    ``trust_fingerprint`` is False when the shadow was (or would be) rebuilt with other
    columns: its recorded fingerprint no longer describes it."""
    adapter, names, key = source.adapter, source.names, source.key
    buckets = trust_fingerprint and state.buckets is not None and isinstance(shadow, TableRef)
    source_fingerprint = None
    if not (buckets and not source.spec.cursor and _count_moved(source, state)):
        source_fingerprint = adapter.fingerprint(source.ref, names)
        if trust_fingerprint and state.fingerprint is not None and source_fingerprint == state.fingerprint:
            return None
    mark = CursorMark.read(state.cursor_hi) if source.spec.cursor else None
    hi = _max_cursor(source) if source.spec.cursor else None
    every = select_from(source.ref, names, "s")
    if hi is not None:
        every = every.where(exp.LTE(this=source.cursor_column("s"), expression=source.cursor_value(hi)))
    narrowed = mark is not None and mark.hi is not None
    if mark is not None and mark.hi is not None:
        last = source.cursor_value(mark.hi)
        past = every.copy().where(exp.GT(this=source.cursor_column("s"), expression=last.copy()))
        from_last = every.copy().where(exp.GTE(this=source.cursor_column("s"), expression=last.copy()))
        recorded = state.fingerprint if trust_fingerprint and isinstance(shadow, TableRef) else None
        for candidates, deletes, how in ((past, False, ""), (from_last, True, _FROM_LAST)):
            new = new_images(source, candidates, shadow, True)
            if _fingerprint_after(source, shadow, recorded, new, deletes) == source_fingerprint:
                return KeyedDiff(candidates, True, deletes, how, source_fingerprint, mark, hi)
    whole = select_from(source.ref, names, "s")
    found = KeyedDiff(whole, False, True, _WHOLE_DIFF if narrowed else "", source_fingerprint, mark, hi)
    if buckets:
        assert state.buckets is not None
        # Only the buckets whose fingerprint changed are diffed (``execution/buckets.py``).
        current = by_bucket.fingerprints(adapter, source.ref, names, key, state.buckets)
        chosen = by_bucket.changed_buckets(adapter, current, source.buckets)
        found = replace(found, how=_BUCKET_DIFF if narrowed else "", buckets=state.buckets, chosen=chosen)
    return found


def _count_moved(source: _Source, state: RelationState) -> bool:
    """Whether the source's row count differs from the shadow's recorded one, asked only
    where counting is free (``Capabilities.free_row_count``): the source then changed for
    sure, and the per-bucket pass that finds where (``_take_buckets``) also gives its
    fingerprint, so the whole fingerprint's pass, the no-change test, is not needed."""
    if not source.adapter.capabilities.free_row_count or state.fingerprint is None:
        return False
    return int(source.adapter.fetch(count_rows(source.ref))[0][0]) != _fingerprint_rows(state.fingerprint)


def repeated_key(source: _Source, shadow: Rows, found: KeyedDiff) -> str | None:
    """Why a key diff cannot be exact, if it cannot: the key repeats in the rows it compares.

    A key diff cannot see a second copy of a row, nor its removal: while the declared key
    repeats (in the source now, or in the copy taken last time), each change the cursor
    cannot account for is captured whole and the source's readers rebuild, which is exact
    either way. Where buckets are diffed, only theirs are checked: a key's rows all lie in
    its bucket, and an unchanged bucket needs no diff. The cursor's narrow forms need no
    check: they are verified against the source's fingerprint whole."""
    if found.few:
        return None
    adapter = source.adapter
    checks = _key_repeats(source, shadow, found)
    return _REPEATED.format(key=", ".join(source.key)) if any(adapter.fetch(exp.select(*checks))[0]) else None


_REPEATED = "unique_key ({key}) has repeated values; its readers are rebuilt in full until it is unique"


def _key_repeats(source: _Source, shadow: Rows, found: KeyedDiff) -> list[exp.Exists]:
    """Whether two of the compared rows share a key value, in the source's and in the
    shadow's (NULLs count as equal, as in the diff)."""
    columns = [exp.column(name, table="t", quoted=True) for name in source.key]
    return [
        exp.Exists(
            this=exp.select(exp.Literal.number(1))
            .from_(from_rows(rows, "t"))
            .group_by(*(c.copy() for c in columns))
            .having(exp.func("count", exp.Star()) > 1)
        )
        for rows in (found.source_rows(source), found.shadow_rows(source, shadow))
    ]


def capture_keyed(source: _Source, state: RelationState, trust_fingerprint: bool) -> Captured | None:
    """A keyed source diffed against its shadow, as narrowly as ``keyed_changes`` found
    exact. ``trust_fingerprint`` is False when the shadow was just rebuilt with other columns."""
    adapter = source.adapter
    found = keyed_changes(source, state, source.copy, trust_fingerprint)
    if found is None:
        return None
    found, scratch = _take_buckets(source, found) if found.chosen is not None else (found, [])
    repeated = repeated_key(source, source.copy, found)
    if repeated is not None:
        _drop(adapter, scratch)
        LOG.warning("source %s: %s", source.name, repeated)
        return _capture_whole(source, state, repeated)
    if found.how:
        LOG.warning("source %s: %s", source.name, found.how)
    batch = source.batch
    with adapter.transaction():
        # Leftovers of a capture interrupted on a warehouse without transactions.
        adapter.execute(exp.delete(source.log.to_table(), where=exp.column(BATCH_COLUMN, quoted=True) >= batch))
        _forget_fingerprint(adapter, source.name, state)
        rows = _diff_batch(source, found, batch)
        # Moved by what the batch did to the shadow rather than taken from the check: where
        # there are no transactions the source may have moved between the check and the diff.
        if found.taken is not None:  # changed buckets diffed: from the copies the diff read
            shadow_fingerprint = _taken_fingerprint(source, state.fingerprint, found)
        else:
            # Only from a recorded fingerprint the check proved (the cursor's narrow forms): one
            # that no longer describes the shadow (a crash, another engine's hash) sends the
            # capture to a wider diff, which fingerprints the shadow whole and so heals it.
            proved = state.fingerprint if trust_fingerprint and found.few else None
            shadow_fingerprint = _shadow_fingerprint(source, proved, batch)
        shadow_rows = _fingerprint_rows(shadow_fingerprint)
        buckets = _keep_buckets(source, state, found, batch, rows, shadow_rows, trust_fingerprint)
        mark = found.mark
        mark = CursorMark(mark.cursor, found.hi or mark.hi) if mark is not None else None
        source.save(shadow_fingerprint, mark, buckets)
    _drop(adapter, scratch)
    recorded = ((batch, "delta", rows),) if rows else ()
    return Captured(recorded, _keyed_reason(rows, found))


def _take_buckets(source: _Source, found: KeyedDiff) -> tuple[KeyedDiff, list[TableRef]]:
    """Copy into scratch tables, before any state changes, the source's per-bucket
    fingerprints (one pass over it, which also gives its whole fingerprint where the
    no-change test was skipped: ``_count_moved``), the buckets whose fingerprint changed,
    then the source's and the shadow's rows in them: the checks and the diff read them in
    several statements, and each copy is one scan of its table. Returns ``found`` reading
    the copies, and the scratch tables."""
    adapter = source.adapter
    temporary = adapter.capabilities.temp_tables
    parts = ("fingerprints", "buckets", "taken", "shadowed")
    tables = [work_table(source.ref, part, temporary) for part in parts]
    assert found.buckets is not None
    current = by_bucket.fingerprints(adapter, source.ref, source.names, source.key, found.buckets)
    execute_create(adapter, create_table_as(tables[0], current, temporary=temporary))
    if found.fingerprint is None:
        found = replace(found, fingerprint=by_bucket.whole_fingerprint(adapter, tables[0]))
    chosen = by_bucket.changed_buckets(adapter, tables[0], source.buckets)
    execute_create(adapter, create_table_as(tables[1], chosen, temporary=temporary))
    found = replace(found, chosen=select_from(tables[1], [by_bucket.BUCKET_COLUMN]))
    for table, rows in ((tables[2], found.source_rows(source)), (tables[3], found.shadow_rows(source, source.copy))):
        assert not isinstance(rows, TableRef)
        execute_create(adapter, create_table_as(table, rows, temporary=temporary))
    return replace(found, taken=(tables[2], tables[3])), tables


def _drop(adapter: Adapter, tables: list[TableRef]) -> None:
    for table in tables:
        adapter.execute(drop_table(table))


def _fingerprint_after(
    source: _Source, shadow: Rows, recorded: str | None, new: exp.Select, deletes: bool
) -> str | None:
    """The fingerprint of ``shadow`` as a batch of ``new`` images would leave it. From the
    fingerprint ``recorded`` for the shadow, where there is one, moved by the fingerprints
    of the rows the batch replaces and of its new images: two reads of a few rows (the
    shadow's key column scanned, not every row hashed). Else the refreshed shadow is
    fingerprinted whole (``_refreshed``)."""
    adapter, names = source.adapter, source.names
    if recorded is None:
        return adapter.fingerprint(_refreshed(source, shadow, new, deletes), names)
    removed = adapter.fingerprint(old_images(source, shadow, new, deletes, source.ref), names)
    added = adapter.fingerprint(new, names)
    assert removed is not None and added is not None
    return fingerprint_moved(recorded, removed, added, adapter.fingerprint_parts)


def _shadow_fingerprint(source: _Source, recorded: str | None, batch: int) -> str:
    """The shadow's fingerprint after ``_refresh_shadow`` applied ``batch``: it removed the
    batch's old images and added its new ones (``_diff_batch``), so ``recorded`` (the
    fingerprint before, where it described the shadow) moves by the change log's rows of
    the batch. Without one, the shadow is fingerprinted whole."""
    adapter, names = source.adapter, source.names
    if recorded is None:
        whole = adapter.fingerprint(source.copy, names)
        assert whole is not None
        return whole
    removed = adapter.fingerprint(_batch_images(source, batch, old=True), names)
    added = adapter.fingerprint(_batch_images(source, batch, old=False), names)
    assert removed is not None and added is not None
    return fingerprint_moved(recorded, removed, added, adapter.fingerprint_parts)


def _taken_fingerprint(source: _Source, recorded: str | None, found: KeyedDiff) -> str:
    """The shadow's fingerprint after a diff of the changed buckets (``_take_buckets``). In
    those buckets the shadow now holds exactly the source's rows copied for the diff (every
    key there compared, none repeated: ``repeated_key``), elsewhere what it held; so
    ``recorded`` moves by the two copies' fingerprints, a few rows each, where the shadow
    used to be hashed whole. The result must be the source's fingerprint the capture
    started from (the buckets left out have equal fingerprints on both sides): where it is
    not (a recorded fingerprint of another engine's hash, a source that moved meanwhile
    where there are no transactions), the shadow is hashed whole, which heals the record."""
    adapter, names = source.adapter, source.names
    assert found.taken is not None
    if recorded is not None:
        removed = adapter.fingerprint(found.taken[1], names)
        added = adapter.fingerprint(found.taken[0], names)
        assert removed is not None and added is not None
        moved = fingerprint_moved(recorded, removed, added, adapter.fingerprint_parts)
        if moved == found.fingerprint:
            return moved
    whole = adapter.fingerprint(source.copy, names)
    assert whole is not None
    return whole


def _keep_buckets(
    source: _Source, state: RelationState, found: KeyedDiff, batch: int, rows: int, shadow_rows: int, trusted: bool
) -> int:
    """Bring the bucket fingerprints up to date with the shadow after ``batch``: the changed
    buckets fingerprinted from the source's rows copied for their diff (which the shadow
    now holds there, ``_taken_fingerprint``), or the buckets of the batch's keys moved or
    fingerprinted again from the shadow, or the whole table rebuilt where it did not
    describe the shadow (none yet, columns followed) or the row count outgrew its bucket
    count. Returns the bucket count."""
    adapter, names, key = source.adapter, source.names, source.key
    buckets = state.buckets
    if buckets is None or not trusted or not by_bucket.fits(buckets, shadow_rows):
        buckets = by_bucket.bucket_count(shadow_rows)
        execute_create(adapter, by_bucket.rebuild_statement(adapter, source.buckets, source.copy, names, key, buckets))
    elif found.taken is not None and found.chosen is not None:
        copied = found.taken[0]
        assert isinstance(copied, TableRef)  # a build's copy (a prediction's are queries)
        for statement in by_bucket.update_statements(
            adapter, source.buckets, copied, names, key, buckets, found.chosen
        ):
            adapter.execute(statement)
    elif 0 < rows <= by_bucket.MOVE_ROWS:
        removed, added = _batch_images(source, batch, old=True), _batch_images(source, batch, old=False)
        by_bucket.move(adapter, source.buckets, removed, added, names, key, buckets)
    elif rows:
        touched = exp.select(exp.alias_(adapter.key_bucket(key, "c", buckets), by_bucket.BUCKET_COLUMN, quoted=True))
        touched = touched.from_(source.log.to_table(alias="c")).where(_in_batch(batch, "c"))
        for statement in by_bucket.update_statements(
            adapter, source.buckets, source.copy, names, key, buckets, touched
        ):
            adapter.execute(statement)
    return buckets


def _keyed_reason(rows: int, found: KeyedDiff) -> str:
    return "; ".join(filter(None, [f"{rows} old and new row images", found.how])) if rows else ""


def predict_keyed(source: _Source, state: RelationState, shadow: Rows, trust_fingerprint: bool) -> Captured:
    """``capture_keyed``, counted: the batch it would record, in one query that writes
    nothing. Where buckets are diffed, the changed buckets and the source's and shadow's
    rows in them are CTEs its parts share, where the build copies them into scratch tables
    (``_take_buckets``): an engine that materialises a CTE read more than once (DuckDB,
    Postgres) runs the per-bucket pass, the capture's largest, once, not once per part."""
    found = keyed_changes(source, state, shadow, trust_fingerprint)
    if found is None:
        return Captured()
    shared: list[tuple[str, exp.Query]] = []  # the CTEs of the query, in order
    if found.chosen is not None:
        shared.append((_CHOSEN, found.chosen))
        found = replace(found, chosen=_rows_of(_CHOSEN, [by_bucket.BUCKET_COLUMN]))
        taken = found.source_rows(source), found.shadow_rows(source, shadow)
        assert not isinstance(taken[0], TableRef) and not isinstance(taken[1], TableRef)
        shared += [(_TAKEN, taken[0]), (_SHADOWED, taken[1])]
        found = replace(found, taken=(_rows_of(_TAKEN, source.names), _rows_of(_SHADOWED, source.names)))
    compared = found.shadow_rows(source, shadow)
    new = new_images(source, found.diffed(source), compared, found.few)
    old = old_images(source, compared, new, found.deletes, found.source_rows(source))
    counts = [exp.select(exp.func("count", exp.Star())).from_(rows.subquery("q")).subquery() for rows in (new, old)]
    query = exp.select(*counts, *([] if found.few else _key_repeats(source, shadow, found)))
    for name, part in shared:
        query = query.with_(name, as_=part)
    new_rows, old_rows, *repeats = source.adapter.fetch(query)[0]
    if any(repeats):
        repeated = _REPEATED.format(key=", ".join(source.key))
        return Captured(((source.batch, "full", 0),), f"captured whole: {repeated}")
    rows = int(new_rows) + int(old_rows)
    return Captured(((source.batch, "delta", rows),) if rows else (), _keyed_reason(rows, found))


# the prediction's CTEs: the changed buckets, and the source's and the shadow's rows in them
_CHOSEN, _TAKEN, _SHADOWED = "_sqlorch_chosen", "_sqlorch_taken", "_sqlorch_shadowed"


def _rows_of(name: str, columns: list[str]) -> exp.Select:
    return exp.select(*columns_of(columns)).from_(name)


def _diff_batch(source: _Source, found: KeyedDiff, batch: int) -> int:
    """Diff the candidates against the shadow into ``batch``, record it and update the
    shadow; returns the rows written to the change log."""
    log, names, all_columns = source.log, source.names, [*source.names, BATCH_COLUMN, OLD_COLUMN]
    compared = found.shadow_rows(source, source.copy)
    new = new_images(source, found.diffed(source), compared, found.few)
    source.adapter.execute(insert_into(log, all_columns, with_images(new, names, batch, False)))
    present = found.source_rows(source)
    old = old_images(source, compared, _batch_images(source, batch, old=False), found.deletes, present)
    source.adapter.execute(insert_into(log, all_columns, with_images(old, names, batch, True)))
    rows = source.batch_rows(batch)
    if rows:
        # Order matters where there are no transactions: the batch is recorded before the
        # shadow and the watermark move past it, so a crash can repeat a batch (consumers
        # replace keys, which is idempotent) but never lose one.
        source.record_batch(batch, "delta", rows)
        _refresh_shadow(source, batch)
    return rows


def _in_batch(batch: int, table: str | None = None) -> exp.Expr:
    return exp.column(BATCH_COLUMN, table=table, quoted=True).eq(batch)


def _forget_fingerprint(adapter: Adapter, name: str, state: RelationState) -> None:
    """Clear a keyed source's recorded fingerprint and bucket count before its shadow changes."""
    if state.fingerprint is None and state.buckets is None:
        return
    for statement in save_relation_statements(name, replace(state, fingerprint=None, buckets=None)):
        adapter.execute(statement)


def _fingerprint_rows(fingerprint: str) -> int:
    """The row count a fingerprint starts with (every adapter's does: ``count:...``)."""
    return int(fingerprint.split(":", 1)[0])


def new_images(source: _Source, candidates: exp.Select, shadow: Rows, few: bool) -> exp.Select:
    """The candidate rows the shadow does not hold as they are: inserted or updated rows.
    With ``few`` candidates the shadow is first narrowed to their keys: the engine then
    hashes the few rows and streams the shadow past them, instead of hashing the shadow."""
    compared = shadow
    if few:
        of_candidates = exp.Exists(
            this=exp.select(exp.Literal.number(1))
            .from_(candidates.copy().subquery("k"))
            .where(null_safe_match("k", "h", source.key, hashable=True))
        )
        compared = _select(shadow, source.names, "h").where(of_candidates)
    unchanged = (
        exp.select(exp.Literal.number(1))
        .from_(from_rows(compared, "h"))
        .where(null_safe_match("h", "s", source.names, hashable=True))
    )
    return candidates.where(exp.not_(exp.Exists(this=unchanged)))


def old_images(source: _Source, shadow: Rows, new: exp.Select, deletes: bool, present: Rows) -> exp.Select:
    """The shadow rows replaced by a new image of their key, and with ``deletes`` those
    whose key left the source (``present``: the source's rows, or those of the buckets
    diffed)."""
    key = source.key
    gone: exp.Expr = exp.Exists(
        this=exp.select(exp.Literal.number(1))
        .from_(new.copy().subquery("n"))
        .where(null_safe_match("n", "h", key, hashable=True))
    )
    if deletes:
        still_there = exp.Exists(
            this=exp.select(exp.Literal.number(1))
            .from_(from_rows(present, "s"))
            .where(null_safe_match("s", "h", key, hashable=True))
        )
        gone = exp.or_(gone, exp.not_(still_there))
    return _select(shadow, source.names, "h").where(gone)


def _batch_images(source: _Source, batch: int, old: bool) -> exp.Select:
    """The change log's old (``old``) or new images of ``batch``."""
    flag: exp.Expr = exp.column(OLD_COLUMN, table="c", quoted=True)
    return changed_rows(source.log, source.names, batch - 1, batch).where(flag if old else exp.not_(flag))


def _refresh_shadow(source: _Source, batch: int) -> None:
    """Replace the shadow rows of every key in ``batch`` by the batch's new images."""
    log, shadow, key = source.log, source.copy, source.key
    in_batch = exp.Exists(
        this=exp.select(exp.Literal.number(1))
        .from_(log.to_table(alias="n"))
        .where(exp.and_(_in_batch(batch, "n"), null_safe_match("n", shadow.name, key, hashable=True)))
    )
    source.adapter.execute(exp.delete(shadow.to_table(), where=in_batch))
    source.adapter.execute(insert_into(shadow, source.names, _batch_images(source, batch, old=False)))


def _refreshed(source: _Source, shadow: Rows, new: exp.Select, deletes: bool) -> exp.Query:
    """The shadow as ``_refresh_shadow`` leaves it after a batch of ``new`` images and their
    old images (``old_images``), as a query: its rows of keys outside the batch (with
    ``deletes``, and still in the source), plus the new images. The old images are not
    computed: every one has a key of the new images, or (deletes) a key gone. The new
    images are a CTE, read twice: an engine that materialises it diffs them once."""
    key, images = source.key, "sqlorch_new"
    replaced = exp.Exists(
        this=exp.select(exp.Literal.number(1))
        .from_(exp.table_(exp.to_identifier(images, quoted=True), alias="n"))
        .where(null_safe_match("n", "h", key, hashable=True))
    )
    kept = _select(shadow, source.names, "h").where(exp.not_(replaced))
    if deletes:
        still_there = exp.Exists(
            this=exp.select(exp.Literal.number(1))
            .from_(source.ref.to_table(alias="s"))
            .where(null_safe_match("s", "h", key, hashable=True))
        )
        kept = kept.where(still_there)
    added = exp.select(*columns_of(source.names, "i")).from_(
        exp.table_(exp.to_identifier(images, quoted=True), alias="i")
    )
    return exp.union(kept, added, distinct=False).with_(exp.to_identifier(images, quoted=True), as_=new)
