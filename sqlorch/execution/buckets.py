"""Bucket fingerprints of a keyed source's shadow: what lets a capture diff only the keys
whose rows changed instead of the whole table.

Each row goes to a bucket by a hash of its key (``Adapter.key_bucket``: every row of one
key, NULLs included, in one bucket). Per bucket, ``_sqlorch.buckets__<source>`` keeps the
fingerprint of the shadow's rows in it (``Adapter.fingerprint_aggregates``: the row count
and an order-independent sum, or XOR and sum, of a 64-bit hash of each whole row). A capture
fingerprints the source per bucket in one aggregate scan (no join, no shadow read), and only
the buckets whose fingerprint differs from the stored one, or that appear on one side only,
are diffed row by row against the shadow.

Why it is exact: a bucket left out is one whose rows in the source have the same count and
hash sum as its rows in the shadow. Two different multisets of rows with the same count
have the same sum of 64-bit row hashes with odds of about 2^-64 per bucket that changed:
the assumption the whole-table fingerprint of an undeclared source and of a keyed source
already makes (``capture.py``), now made per changed bucket. Snowflake and BigQuery keep the
XOR of a 63- or 64-bit hash plus the sum of its low 31 bits, as their whole fingerprints do.

Repeated keys: a key diff cannot see a second copy of a row, so the keys it compares must
be unique. They are checked in the changed buckets only, of the source and of the shadow.
That is enough: every row of a key lies in its bucket, and in an unchanged bucket source
and shadow hold the same rows, so nothing there is captured, repeated or not.

Crash safety, as for the shadow's whole fingerprint: the bucket count recorded in
``_sqlorch.relations`` (``RelationState.buckets``) says the bucket table describes the
shadow. It is cleared before the shadow changes and written again after the bucket table
was brought up to date, so a crash where there are no transactions leaves no bucket count,
and the next capture diffs every key and rebuilds the table (``rebuild_statement``).

The bucket count is a power of two near the row count / 16 (``bucket_count``): a bucket
holds a few rows, so the rows diffed are about 16 per changed key, while the per-bucket
aggregate stays a small fraction of the source. The table is rebuilt with a new count
when the source's rows move past 4x that (``fits``).
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.adapters.base import Adapter, moved_parts
from sqlorch.execution.statements import Rows, create_table_as, from_rows, insert_into, select_from
from sqlorch.refs import TableRef

BUCKET_COLUMN = "_sqlorch_bucket"
_ROWS_PER_BUCKET = 16
_SLACK = 4  # how far the rows may move from the bucket count's ideal before a rebuild
MOVE_ROWS = 1_000  # a batch of at most this many rows moves the buckets it touches (``move``)


def bucket_count(rows: int) -> int:
    """The power of two nearest above ``rows`` / 16 (1 for a small table)."""
    buckets = 1
    while buckets * _ROWS_PER_BUCKET < rows:
        buckets *= 2
    return buckets


def fits(buckets: int, rows: int) -> bool:
    """Whether ``buckets`` is still within 4x of the count ``rows`` would get."""
    ideal = bucket_count(rows)
    return ideal <= buckets * _SLACK and buckets <= ideal * _SLACK


def _fingerprint_names(adapter: Adapter) -> list[str]:
    return [f"_sqlorch_f{i}" for i in range(len(adapter.fingerprint_aggregates(["x"])))]


def fingerprints(adapter: Adapter, rows: Rows, names: list[str], key: list[str], buckets: int) -> exp.Select:
    """Per bucket of ``rows``, its number and its fingerprint over ``names``."""
    bucket = adapter.key_bucket(key, "t", buckets)
    aggregates = [
        exp.alias_(aggregate, name, quoted=True)
        for aggregate, name in zip(adapter.fingerprint_aggregates(names, "t"), _fingerprint_names(adapter), strict=True)
    ]
    return (
        exp.select(exp.alias_(bucket, BUCKET_COLUMN, quoted=True), *aggregates)
        .from_(from_rows(rows, "t"))
        .group_by(bucket.copy())
    )


def changed_buckets(adapter: Adapter, current: Rows, stored: TableRef) -> exp.Select:
    """The buckets whose fingerprint in ``current`` (``fingerprints`` of the source, or a
    table of them) differs from the one ``stored``, or that only one of them has: their
    number, as ``_sqlorch_bucket``."""
    column = exp.column(BUCKET_COLUMN, table="n", quoted=True)
    other = exp.column(BUCKET_COLUMN, table="o", quoted=True)
    same = exp.and_(
        *(
            exp.column(name, table="n", quoted=True).eq(exp.column(name, table="o", quoted=True))
            for name in _fingerprint_names(adapter)
        )
    )
    one_side = exp.or_(
        exp.Is(this=column.copy(), expression=exp.null()), exp.Is(this=other.copy(), expression=exp.null())
    )
    return (
        exp.select(exp.alias_(exp.func("coalesce", column, other), BUCKET_COLUMN, quoted=True))
        .from_(from_rows(current, "n"))
        .join(stored.to_table(alias="o"), on=column.copy().eq(other.copy()), join_type="full outer")
        .where(exp.or_(one_side, exp.not_(exp.paren(same))))
    )


def whole_fingerprint(adapter: Adapter, per_bucket: TableRef) -> str:
    """The fingerprint of the rows a table of ``fingerprints`` describes, in the adapter's
    text form (``count:...``), from that table alone: each part is a sum or an XOR over
    rows, so the whole's is the sum or XOR of the buckets' (``Adapter.fingerprint_parts``)."""
    parts = [
        exp.BitwiseXorAgg(this=exp.column(name, quoted=True))
        if kind == "xor"
        else exp.func("sum", exp.column(name, quoted=True))
        for kind, name in zip(adapter.fingerprint_parts, _fingerprint_names(adapter), strict=True)
    ]
    query = exp.select(*(exp.func("coalesce", part, exp.Literal.number(0)) for part in parts)).from_(
        per_bucket.to_table()
    )
    return ":".join(str(int(value)) for value in adapter.fetch(query)[0])


def in_buckets(adapter: Adapter, key: list[str], alias: str, buckets: int, chosen: exp.Query) -> exp.Expr:
    """The row aliased ``alias`` lies in one of the buckets ``chosen`` (a query of
    ``_sqlorch_bucket``)."""
    return adapter.key_bucket(key, alias, buckets).isin(query=chosen.copy())


def rebuild_statement(
    adapter: Adapter, stored: TableRef, shadow: TableRef, names: list[str], key: list[str], buckets: int
) -> exp.Create:
    """The bucket table made again from the whole shadow."""
    return create_table_as(stored, fingerprints(adapter, shadow, names, key, buckets))


def update_statements(
    adapter: Adapter,
    stored: TableRef,
    shadow: TableRef,
    names: list[str],
    key: list[str],
    buckets: int,
    touched: exp.Query,
) -> list[exp.Expr]:
    """The buckets ``touched`` (a query of ``_sqlorch_bucket``: those of the keys a batch
    changed in the shadow) fingerprinted again from ``shadow``: the shadow, or a table that
    holds exactly its rows in those buckets (the capture's copy of the source's rows it
    diffed them with); the others stand."""
    chosen = exp.select(exp.column(BUCKET_COLUMN, table="b", quoted=True)).from_(touched.copy().subquery("b"))
    forget = exp.delete(stored.to_table(), where=exp.column(BUCKET_COLUMN, quoted=True).isin(query=chosen.copy()))
    shadow_rows = select_from(shadow, names, "h").where(in_buckets(adapter, key, "h", buckets, chosen))
    again = fingerprints(adapter, shadow_rows, names, key, buckets)
    return [forget, insert_into(stored, [BUCKET_COLUMN, *_fingerprint_names(adapter)], again)]


def move(
    adapter: Adapter, stored: TableRef, removed: Rows, added: Rows, names: list[str], key: list[str], buckets: int
) -> None:
    """Move the stored fingerprints of the buckets a small batch touched by its rows: those
    that left the shadow (``removed``: the batch's old images) and those that joined it
    (``added``: its new images). Fingerprints are sums and XORs (``Adapter.fingerprint_parts``),
    so this is exact and reads only the batch and the touched buckets' stored rows, where
    ``update_statements`` hashes the key of every shadow row to find theirs. A bucket left
    with no rows is deleted, as a rebuild from the shadow would have no row for it."""

    def per_bucket(rows: Rows) -> dict[int, tuple[int, ...]]:
        fetched = adapter.fetch(fingerprints(adapter, rows, names, key, buckets))
        return {int(row[0]): tuple(int(value) for value in row[1:]) for row in fetched}

    out, into = per_bucket(removed), per_bucket(added)
    touched = sorted(out.keys() | into.keys())
    if not touched:
        return
    columns = [BUCKET_COLUMN, *_fingerprint_names(adapter)]
    in_touched = exp.column(BUCKET_COLUMN, quoted=True).isin(*(exp.Literal.number(b) for b in touched))
    current = {
        int(row[0]): tuple(int(value) for value in row[1:])
        for row in adapter.fetch(select_from(stored, columns).where(in_touched))
    }
    zero = (0,) * len(adapter.fingerprint_parts)
    rows = []
    for bucket in touched:
        moved = moved_parts(
            current.get(bucket, zero), out.get(bucket, zero), into.get(bucket, zero), adapter.fingerprint_parts
        )
        if moved[0]:  # the row count: an emptied bucket has no row
            rows.append((bucket, *moved))
    adapter.execute(exp.delete(stored.to_table(), where=in_touched.copy()))
    if rows:
        adapter.insert_rows(stored, columns, rows)
