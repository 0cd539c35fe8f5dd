"""Bucket fingerprints of a keyed source (``execution/buckets.py``) on every target: each
warehouse hashes with its own functions (``Adapter.key_bucket``,
``Adapter.fingerprint_aggregates``), so the same capture statements are run on DuckDB and
the Postgres, Snowflake and BigQuery stand-ins, and checked the same way: the batch
recorded, the bucket table against the shadow fingerprinted from scratch, the models
against their SQL, and that only the buckets whose fingerprint changed were diffed."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.execution import buckets as by_bucket
from sqlorch.execution.statements import select_from
from sqlorch.refs import TableRef
from sqlorch.state.store import bucket_table, shadow_table, state_table
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, build, create_table
from tests.conftest import write_files

ITEMS = TableRef("raw", "items")
COLUMNS = {"id": "BIGINT", "cat": "BIGINT", "price": "DECIMAL(12, 2)", "name": "VARCHAR"}
PROJECT = {
    "models/sources.yml": "sources:\n  raw.items: {unique_key: id}\n",
    "models/marts/by_cat.sql": "SELECT cat, count(*) AS n, sum(price) AS total FROM raw.items GROUP BY cat",
    "models/marts/items.sql": "SELECT id, cat, price, name FROM raw.items",
}


def _id(value: int) -> exp.Expr:
    return exp.column("id", quoted=True).eq(value)


def _batches(adapter: Adapter) -> list[tuple[int, str, int]]:
    query = (
        exp.select(*(exp.column(c, quoted=True) for c in ("batch", "kind", "rows")))
        .from_(state_table("batches").to_table())
        .where(exp.column("relation", quoted=True).eq(exp.Literal.string("raw.items")))
    )
    return sorted((int(b), str(k), int(n)) for b, k, n in adapter.fetch(query))


def _bucket_count(adapter: Adapter) -> int:
    query = (
        exp.select(exp.column("buckets", quoted=True))
        .from_(state_table("relations").to_table())
        .where(exp.column("relation", quoted=True).eq(exp.Literal.string("raw.items")))
    )
    return int(adapter.fetch(query)[0][0])


def _assert_buckets_describe_the_shadow(adapter: Adapter, kind: str) -> int:
    buckets = _bucket_count(adapter)
    fresh = adapter.fetch(by_bucket.fingerprints(adapter, shadow_table(ITEMS), list(COLUMNS), ["id"], buckets))
    stored = adapter.fetch(select_from(bucket_table(ITEMS), list(adapter.columns(bucket_table(ITEMS)) or {})))
    # exact integers: the sums are 64-bit and more, which a float comparison would round
    assert sorted(tuple(int(v) for v in row) for row in fresh) == sorted(
        tuple(int(v) for v in row) for row in stored
    ), kind
    return buckets


def _last_batch(warehouse: Warehouse, project: Path, adapter: Adapter) -> tuple[str, int]:
    before = _batches(adapter)
    build(warehouse, project)
    after = _batches(adapter)
    assert len(after) == len(before) + 1, (warehouse.kind, after)
    return after[-1][1:]


def test_a_keyed_source_is_diffed_in_its_changed_buckets(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, ITEMS, COLUMNS)
    adapter.insert_rows(ITEMS, list(COLUMNS), [(i, i % 5, Decimal(i) / 4, f"n{i}") for i in range(1, 301)])
    build(warehouse, project)
    assert _assert_buckets_describe_the_shadow(adapter, warehouse.kind) == 32  # 300 rows, about 16 a bucket

    # updates, a delete and inserts (one with a NULL key) in several buckets
    adapter.execute(exp.update(ITEMS.to_table(), {"price": exp.Literal.number(0)}, where=exp.column("id").isin(5, 77)))
    adapter.execute(exp.delete(ITEMS.to_table(), where=_id(12)))
    adapter.insert_rows(ITEMS, list(COLUMNS), [(1000, 1, Decimal("2.00"), "new"), (None, 2, Decimal("3.00"), "null")])
    assert _last_batch(warehouse, project, adapter) == ("delta", 7)
    _assert_buckets_describe_the_shadow(adapter, warehouse.kind)
    assert_models_match_their_sql(warehouse, project)

    # a shadow row changed behind sqlorch's back in a bucket the source did not change is
    # not seen: only the bucket of the row that changed is diffed
    bucket = adapter.key_bucket(["id"], "t", 32)
    pairs = adapter.fetch(exp.select("t.id", bucket).from_(ITEMS.to_table(alias="t")).where("t.id < 100"))
    by_id = {int(i): int(b) for i, b in pairs}
    moved = next(i for i in sorted(by_id) if by_id[i] != by_id[1])
    adapter.execute(exp.update(shadow_table(ITEMS).to_table(), {"name": exp.Literal.string("stale")}, where=_id(1)))
    adapter.execute(exp.update(ITEMS.to_table(), {"name": exp.Literal.string("moved")}, where=_id(moved)))
    assert _last_batch(warehouse, project, adapter) == ("delta", 2)

    # every row of one bucket deleted (the shadow's stale row put back first): the batch moves
    # the fingerprints it touched, and the emptied bucket's row goes, as a rebuild has none
    adapter.execute(exp.update(shadow_table(ITEMS).to_table(), {"name": exp.Literal.string("n1")}, where=_id(1)))
    everything = adapter.fetch(exp.select("t.id", bucket.copy()).from_(ITEMS.to_table(alias="t")).where("t.id > 0"))
    emptied = next(int(b) for _, b in everything if int(b) != by_id[1])
    gone = [int(i) for i, b in everything if int(b) == emptied]
    adapter.execute(exp.delete(ITEMS.to_table(), where=exp.column("id", quoted=True).isin(*gone)))
    assert _last_batch(warehouse, project, adapter) == ("delta", len(gone))
    _assert_buckets_describe_the_shadow(adapter, warehouse.kind)
    assert_models_match_their_sql(warehouse, project)
