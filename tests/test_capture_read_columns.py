"""A keyed source's capture keeps and hashes only the columns its readers name
(``capture.captured_columns``): its key, and what the models reading it (and its audits)
name. A change to another column changes no model's rows, so nothing is captured; a model
that starts to read a column the source had recaptures the source whole (the old values of
that column were never kept), and one no longer read leaves the shadow. Where counting is
free (DuckDB) and the row count moved, the no-change fingerprint is skipped: the per-bucket
pass gives it. Each step on a real DuckDB file through the CLI, ``plan --json`` against the
build, every model against its SQL run from scratch, and the shadow's record and bucket
table against the shadow fingerprinted from scratch."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from sqlorch.adapters.duckdb import DuckDBAdapter
from sqlorch.refs import TableRef
from sqlorch.state.store import change_log, shadow_table
from tests.conftest import run_cli, write_files
from tests.test_capture_buckets import assert_buckets_describe_the_shadow, items_batches
from tests.test_capture_exactness import assert_exact, build, sql
from tests.test_noop_build import build as profiled_build

ITEMS = TableRef("raw", "items")
READ = ["id", "cat", "price"]  # what the models below name; ``name`` and ``note`` no model reads
NOTES = "models/marts/notes.sql"


def make(root: Path) -> Path:
    write_files(
        root,
        {
            "models/sources.yml": "sources:\n  raw.items: {unique_key: id}\n",
            "models/marts/by_cat.sql": "SELECT cat, count(*) AS n, sum(price) AS total FROM raw.items GROUP BY cat",
            # EXISTS (SELECT *) reads no column (``columns_named``)
            "models/marts/priced.sql": (
                "SELECT i.id, i.price FROM raw.items AS i "
                "WHERE EXISTS (SELECT * FROM raw.items AS j WHERE j.cat = i.cat AND j.id <> i.id)"
            ),
        },
    )
    sql(
        root,
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.items (id INTEGER, cat INTEGER, price DECIMAL(12, 2), name VARCHAR, note VARCHAR)",
        "INSERT INTO raw.items SELECT i, i % 7, i * 1.5, 'n' || i, 'note ' || i FROM range(1, 2001) t(i)",
    )
    (root / "profiles.yml").write_text(
        "target: dev\ntargets:\n  dev: {type: duckdb, path: warehouse.duckdb, profile_log: target/profile.jsonl}\n"
    )
    return root


def kept_columns(root: Path) -> tuple[list[str], list[str]]:
    """The columns of the shadow and of the change log (without their own)."""
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        out = []
        for table in (shadow_table(ITEMS), change_log(ITEMS)):
            rows = con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                "ORDER BY ordinal_position",
                [table.schema, table.name],
            ).fetchall()
            out.append([str(name) for (name,) in rows if not str(name).startswith("_sqlorch")])
    return out[0], out[1]


def planned_items(root: Path) -> dict:
    run = run_cli("plan", "--json", "--project-dir", root)
    assert run.exit_code == 0, run.output
    return next(s for s in json.loads(run.output)["sources"] if s["source"] == "raw.items")


def assert_record_describes_the_shadow(root: Path, columns: list[str]) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        row = con.execute("SELECT fingerprint FROM _sqlorch.relations WHERE relation = 'raw.items'").fetchone()
    adapter = DuckDBAdapter({"path": str(root / "warehouse.duckdb")})
    try:
        assert row is not None and row[0] == adapter.fingerprint(shadow_table(ITEMS), columns)
    finally:
        adapter.close()
    assert_buckets_describe_the_shadow(root, columns)


def test_only_the_columns_models_name_are_captured(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    assert kept_columns(root) == (READ, READ)
    # a change of columns no model reads is no change: nothing captured, nothing run
    before = items_batches(root)
    sql(root, "UPDATE raw.items SET note = 'edited', name = 'renamed' WHERE id IN (3, 4, 5)")
    assert (planned_items(root)["change"], planned_items(root)["rows"]) == ("none", 0)
    results = build(root)
    assert items_batches(root) == before
    assert {r["action"] for r in results.values()} == {"skip"}, results
    assert_exact(root)
    # read and unread columns of one row, a delete, a NULL key, a new row: the read ones count
    sql(
        root,
        "UPDATE raw.items SET price = price + 1, note = 'both' WHERE id IN (6, 700)",
        "UPDATE raw.items SET cat = 3 WHERE id = 8",
        "DELETE FROM raw.items WHERE id = 9",
        "INSERT INTO raw.items VALUES (NULL, 2, 3.00, 'null key', 'x'), (5000, 1, 2.00, 'new', NULL)",
    )
    plan = planned_items(root)
    build(root)
    batch = items_batches(root)[-1]
    assert (plan["change"], plan["rows"]) == (batch[1], batch[2]) == ("delta", 2 * 3 + 1 + 2)
    assert_record_describes_the_shadow(root, READ)
    assert_exact(root)
    with duckdb.connect(str(root / "warehouse.duckdb"), read_only=True) as con:
        images = con.execute(f"SELECT count(*) FROM {change_log(ITEMS)} WHERE id = 6").fetchone()
    assert images == (2,)  # its old and new image, with the read columns only


def test_a_model_that_starts_reading_a_column_recaptures_the_source_whole(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(root, "UPDATE raw.items SET note = 'unseen' WHERE id = 5")  # not captured: no model reads it
    build(root)
    write_files(root, {NOTES: "SELECT id, note FROM raw.items"})
    plan = planned_items(root)
    assert plan["change"] == "full" and "newly read by a model: note" in plan["reason"], plan
    results = build(root)
    assert kept_columns(root) == ([*READ, "note"], [*READ, "note"])
    assert {results[m]["action"] for m in ("marts.by_cat", "marts.priced", "marts.notes")} == {"full"}, results
    assert_record_describes_the_shadow(root, [*READ, "note"])
    assert_exact(root)
    # from now on its changes are deltas
    sql(root, "UPDATE raw.items SET note = 'seen' WHERE id = 7", "UPDATE raw.items SET name = 'unread' WHERE id = 8")
    plan = planned_items(root)
    results = build(root)
    assert (plan["change"], plan["rows"]) == ("delta", 2), plan
    assert results["marts.notes"]["action"] == "incremental", results
    assert_exact(root)
    # the model gone, the column leaves the shadow and the change log (no rebuild of the others)
    (root / NOTES).unlink()
    sql(root, "UPDATE raw.items SET price = 0 WHERE id = 10")
    plan = planned_items(root)
    assert "no longer read by a model: note" in plan["reason"], plan
    results = build(root)
    assert kept_columns(root) == (READ, READ)
    assert {r["action"] for r in results.values()} == {"incremental"}, results
    assert_record_describes_the_shadow(root, READ)
    assert_exact(root)


def test_a_key_repeated_with_other_unread_values_is_captured_whole(tmp_path: Path) -> None:
    """Two rows of one key that differ only in a column no model reads are still two rows
    to every model: the key is not unique, and the capture says so."""
    root = make(tmp_path / "p")
    build(root)
    sql(root, "INSERT INTO raw.items SELECT id, cat, price, name, 'twin' FROM raw.items WHERE id = 11")
    plan = planned_items(root)
    assert plan["change"] == "full" and "repeated values" in plan["reason"], plan
    build(root)
    assert_exact(root)
    sql(root, "DELETE FROM raw.items WHERE note = 'twin'", "UPDATE raw.items SET price = 1 WHERE id = 12")
    build(root)
    assert_exact(root)
    sql(root, "UPDATE raw.items SET price = 2 WHERE id = 13")
    plan = planned_items(root)
    assert (plan["change"], plan["rows"]) == ("delta", 2), plan
    build(root)
    assert_record_describes_the_shadow(root, READ)
    assert_exact(root)


def _fingerprints_of_the_source(statements: list[str]) -> list[str]:
    """The statements hashing raw.items whole, not per bucket: the no-change test."""
    return [s for s in statements if 'FROM "raw"."items"' in s and "SUM(CAST(HASH(" in s and "GROUP BY" not in s]


def test_the_no_change_fingerprint_is_skipped_where_the_row_count_moved(cli, tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    profiled_build(cli, root)
    sql(root, "INSERT INTO raw.items VALUES (6000, 1, 1.00, 'a', 'b')", "DELETE FROM raw.items WHERE id IN (1, 2)")
    _, statements = profiled_build(cli, root)
    assert _fingerprints_of_the_source(statements) == [], statements
    assert_record_describes_the_shadow(root, READ)
    assert_exact(root)
    # the same count: the fingerprint decides, then the buckets find where
    sql(root, "UPDATE raw.items SET price = 7 WHERE id = 20")
    _, statements = profiled_build(cli, root)
    assert len(_fingerprints_of_the_source(statements)) == 1, statements
    assert_record_describes_the_shadow(root, READ)
    assert_exact(root)
    # unchanged: the fingerprint alone
    _, statements = profiled_build(cli, root)
    assert len(_fingerprints_of_the_source(statements)) == 1, statements
    assert not [s for s in statements if "GROUP BY" in s and 'FROM "raw"."items"' in s], statements
