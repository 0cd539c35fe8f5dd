"""A keyed source without a cursor is captured by its bucket fingerprints
(``execution/buckets.py``): one aggregate scan finds the buckets of keys whose rows
changed, and only those are diffed against the shadow. Each test builds a real DuckDB
project through the CLI, checks the batch ``plan --json`` predicts against the one the
build records, the bucket table against the shadow fingerprinted from scratch, and every
model against its SQL run from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from sqlorch.adapters.duckdb import DuckDBAdapter
from sqlorch.execution import buckets as by_bucket
from sqlorch.execution.statements import select_from
from sqlorch.refs import TableRef
from sqlorch.state.store import bucket_table, shadow_table
from tests.conftest import run_cli, write_files
from tests.test_capture_exactness import assert_exact, build, sql

ITEMS = TableRef("raw", "items")
COLUMNS = ["id", "cat", "price", "name"]
KEY = ["id"]


def make(root: Path, rows: int = 2000) -> Path:
    write_files(
        root,
        {
            "models/sources.yml": "sources:\n  raw.items: {unique_key: id}\n",
            "models/marts/by_cat.sql": "SELECT cat, count(*) AS n, sum(price) AS total FROM raw.items GROUP BY cat",
            "models/marts/items.sql": "SELECT id, cat, price, name FROM raw.items",
        },
    )
    sql(
        root,
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.items (id INTEGER, cat INTEGER, price DECIMAL(12, 2), name VARCHAR)",
        f"INSERT INTO raw.items SELECT i, i % 7, i * 1.5, 'n' || i FROM range(1, {rows + 1}) t(i)",
    )
    return root


def recorded_buckets(root: Path) -> int | None:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("SELECT buckets FROM _sqlorch.relations WHERE relation = 'raw.items'").fetchone()
    assert row is not None
    return None if row[0] is None else int(row[0])


def assert_buckets_describe_the_shadow(root: Path, columns: list[str] = COLUMNS) -> int:
    """The stored bucket fingerprints equal the shadow's, computed from scratch."""
    buckets = recorded_buckets(root)
    assert buckets is not None
    adapter = DuckDBAdapter({"path": str(root / "warehouse.duckdb")})
    try:
        fresh = adapter.fetch(by_bucket.fingerprints(adapter, shadow_table(ITEMS), columns, KEY, buckets))
        stored = adapter.fetch(select_from(bucket_table(ITEMS), ["_sqlorch_bucket", "_sqlorch_f0", "_sqlorch_f1"]))
    finally:
        adapter.close()
    assert sorted(fresh) == sorted(stored)
    return buckets


def items_batches(root: Path) -> list[tuple[int, str, int]]:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT batch, kind, \"rows\" FROM _sqlorch.batches WHERE relation = 'raw.items' ORDER BY batch"
        ).fetchall()
    return [(int(b), str(k), int(n)) for b, k, n in rows]


def planned_then_built(root: Path) -> tuple[dict, tuple[int, str, int]]:
    """Plan, then build: the planned capture and the batch the build recorded (the same)."""
    run = run_cli("plan", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    plan = next(s for s in json.loads(run.output)["sources"] if s["source"] == "raw.items")
    before = items_batches(root)
    build(root)
    after = items_batches(root)
    assert len(after) == len(before) + 1, after
    batch = after[-1]
    assert (plan["change"], plan["rows"]) == (batch[1], batch[2])
    return plan, batch


def test_updates_deletes_and_inserts_are_captured_from_the_changed_buckets(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    assert assert_buckets_describe_the_shadow(root) == 128  # 2,000 rows, about 16 a bucket
    sql(
        root,
        "UPDATE raw.items SET price = price + 1 WHERE id IN (5, 77, 1999)",
        "DELETE FROM raw.items WHERE id = 12",
        "INSERT INTO raw.items VALUES (5000, 1, 2.00, 'new'), (NULL, 2, 3.00, 'null key')",
    )
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 9)  # three updates' two images, a delete, two inserts
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)
    sql(root, "UPDATE raw.items SET name = 'again' WHERE id IS NULL OR id = 5000")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 4)
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)


def test_only_the_buckets_whose_fingerprint_changed_are_diffed(tmp_path: Path) -> None:
    """A shadow row changed behind sqlorch's back, in a bucket whose stored fingerprint
    still matches the source, is not seen: the diff reads the changed buckets only (a
    whole key diff would take that row's two images too)."""
    root = make(tmp_path / "p")
    build(root)
    buckets = assert_buckets_describe_the_shadow(root)
    bucket = f"hash(id) % {buckets}"
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        # two keys in different buckets
        quiet, moved = con.execute(
            f"SELECT a.id, b.id FROM raw.items a, raw.items b WHERE {bucket.replace('id', 'a.id')} "
            f"<> {bucket.replace('id', 'b.id')} ORDER BY a.id, b.id LIMIT 1"
        ).fetchone()
        con.execute(f"UPDATE _sqlorch.shadow__raw__items SET name = 'stale' WHERE id = {quiet}")
        con.execute(f"UPDATE raw.items SET name = 'moved' WHERE id = {moved}")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 2)


def test_a_repeated_key_is_captured_whole_and_later_changes_elsewhere_are_deltas(tmp_path: Path) -> None:
    """A repeated key always lands in a changed bucket (its row changed the bucket), so it
    is found; once captured, a change in another bucket is a delta: the repeated key's
    bucket is the same in source and shadow and is not diffed."""
    root = make(tmp_path / "p")
    build(root)
    sql(root, "INSERT INTO raw.items VALUES (7, 0, 1.00, 'second seven')")
    plan, batch = planned_then_built(root)
    assert batch[1:] == ("full", 0)
    assert "repeated values" in plan["reason"]
    assert_exact(root)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        buckets = recorded_buckets_in(con)
        other = con.execute(
            f"SELECT min(id) FROM raw.items WHERE hash(id) % {buckets} <> hash(7) % {buckets}"
        ).fetchone()
        assert other is not None
        con.execute(f"UPDATE raw.items SET price = price * 2 WHERE id = {other[0]}")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 2)
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)
    # unique again in the source, repeated in the shadow's copy of that bucket: whole again
    sql(root, "DELETE FROM raw.items WHERE name = 'second seven'")
    plan, batch = planned_then_built(root)
    assert batch[1:] == ("full", 0)
    assert_exact(root)
    sql(root, "UPDATE raw.items SET name = 'seven again' WHERE id = 7")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 2)
    assert_exact(root)


def test_columns_followed_rebuild_the_bucket_table(tmp_path: Path) -> None:
    """A column added changes every row's hash, even where no value changed (NULL in the
    source and in the followed shadow): the table is rebuilt over the new columns. (Only
    a column a model reads is captured: a model reading it comes with it.)"""
    root = make(tmp_path / "p")
    build(root)
    sql(root, "ALTER TABLE raw.items ADD COLUMN note VARCHAR")
    write_files(root, {"models/marts/notes.sql": "SELECT id, note FROM raw.items"})
    before = items_batches(root)
    build(root)
    assert items_batches(root) == before  # no row differs
    assert_buckets_describe_the_shadow(root, [*COLUMNS, "note"])
    sql(root, "UPDATE raw.items SET note = 'changed' WHERE id = 10")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 2)
    assert_buckets_describe_the_shadow(root, [*COLUMNS, "note"])
    assert_exact(root)


def recorded_buckets_in(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT buckets FROM _sqlorch.relations WHERE relation = 'raw.items'").fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def test_without_a_recorded_bucket_count_every_key_is_diffed_and_the_table_rebuilt(tmp_path: Path) -> None:
    """What a crash between the shadow's update and the bucket table's leaves where there
    are no transactions: the bucket count cleared, the table stale. The next capture does
    not trust the table: it diffs every key, and rebuilds it."""
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        "UPDATE _sqlorch.relations SET buckets = NULL WHERE relation = 'raw.items'",
        "UPDATE _sqlorch.buckets__raw__items SET _sqlorch_f0 = _sqlorch_f0 + 1",
        "UPDATE _sqlorch.shadow__raw__items SET name = 'stale' WHERE id = 3",
        "UPDATE raw.items SET price = 0 WHERE id = 1500",
    )
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 4)  # the stale shadow row is found too: every key diffed
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)


def test_the_bucket_count_follows_the_row_count(tmp_path: Path) -> None:
    root = make(tmp_path / "p", rows=100)
    build(root)
    assert assert_buckets_describe_the_shadow(root) == 8
    sql(root, "INSERT INTO raw.items SELECT i, i % 7, i, 'more' FROM range(101, 2101) t(i)")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 2000)
    assert assert_buckets_describe_the_shadow(root) == 256  # 2,100 rows: rebuilt at a new count
    sql(root, "DELETE FROM raw.items WHERE id > 150")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 1950)
    assert assert_buckets_describe_the_shadow(root) == 16
    assert_exact(root)


@pytest.mark.parametrize("rows", [0, 1])
def test_an_empty_or_one_row_source(tmp_path: Path, rows: int) -> None:
    root = make(tmp_path / "p", rows=rows)
    build(root)
    assert assert_buckets_describe_the_shadow(root) == 1
    sql(root, "INSERT INTO raw.items VALUES (50, 1, 1.00, 'x')")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", 1)
    sql(root, "DELETE FROM raw.items")
    _, batch = planned_then_built(root)
    assert batch[1:] == ("delta", rows + 1)
    assert_buckets_describe_the_shadow(root)
    assert_exact(root)
