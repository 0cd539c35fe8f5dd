"""The corpus harness itself can fail: a changed foreign table and a wrong exit code are caught."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.hostile.harness import Case, run_case, unowned_snapshot, unowned_tables, write_project

SOURCES = ("CREATE SCHEMA raw", "CREATE TABLE raw.orders AS SELECT range AS id, range * 1.5 AS amount FROM range(5)")


def test_snapshot_sees_a_changed_row_a_changed_type_and_a_dropped_table(tmp_path: Path) -> None:
    db = write_project(tmp_path / "p", {}) / "warehouse.duckdb"
    with duckdb.connect(str(db)) as con:
        for statement in SOURCES:
            con.execute(statement)
    tables = unowned_tables(db)
    assert tables == ['"raw"."orders"']
    original = unowned_snapshot(db, tables)
    for change in (
        "UPDATE raw.orders SET amount = 0 WHERE id = 3",
        "ALTER TABLE raw.orders ALTER amount TYPE DOUBLE",
        "DROP TABLE raw.orders",
    ):
        with duckdb.connect(str(db)) as con:
            con.execute(change)
        changed = unowned_snapshot(db, tables)
        assert changed != original, change
        original = changed


def test_a_clean_case_passes_and_a_wrong_expectation_fails(tmp_path: Path) -> None:
    files = {"models/marts/big.sql": "SELECT id, amount FROM raw.orders WHERE amount > 3"}
    run = run_case(Case("ok", files, ("build",), expect_exit=0, sources_sql=SOURCES), tmp_path / "a")
    assert "big" in run.output
    with pytest.raises(AssertionError, match="exit 0"):
        run_case(Case("wrong-exit", files, ("build",), expect_exit=1, sources_sql=SOURCES), tmp_path / "b")
