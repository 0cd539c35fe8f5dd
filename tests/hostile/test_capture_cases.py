"""Hostile-input corpus: source changes that used to lose rows or wedge the project
(issue 9, reports 1-4, and the schema events around them). Each case builds once, changes
the sources behind sqlorch's back, and builds (or plans) again: exit 0 where the change is
one sqlorch must absorb, and then every model equals its SQL run from scratch."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli
from tests.hostile.harness import Case, run_case
from tests.test_capture_exactness import mismatches

FILES = {
    "models/sources.yml": (
        "sources:\n"
        "  raw.orders: {cursor: loaded_at, append_only: true}\n"
        "  raw.customers: {cursor: updated_at, unique_key: customer_id}\n"
    ),
    "models/staging/stg_orders.sql": "SELECT order_id, customer_id, amount, loaded_at FROM raw.orders\n",
    "models/staging/stg_customers.sql": "SELECT customer_id,\n       name,\n       updated_at\nFROM raw.customers\n",
    "models/marts/revenue.sql": (
        "SELECT customer_id, count(*) AS orders, sum(amount) AS revenue FROM staging.stg_orders GROUP BY customer_id\n"
    ),
    "models/marts/all_orders.sql": "SELECT * FROM raw.orders\n",
}
T0 = "TIMESTAMP '2026-01-01 00:00:00'"
SOURCES = (
    "CREATE SCHEMA raw",
    "CREATE TABLE raw.orders (order_id INTEGER, customer_id INTEGER, amount DECIMAL(12,2), loaded_at TIMESTAMP)",
    "CREATE TABLE raw.customers (customer_id INTEGER, name VARCHAR, updated_at TIMESTAMP)",
    f"INSERT INTO raw.customers SELECT i, 'c' || i, {T0} + to_minutes(i) FROM range(1, 201) t(i)",
    f"INSERT INTO raw.orders SELECT i, 1 + i % 200, i * 1.25, {T0} FROM range(1, 501) t(i)",
)
BUILT = (("build",),)


def case(
    case_id: str, between: tuple[str, ...], args: tuple[str, ...] = ("build",), expect: tuple[str, ...] = ()
) -> Case:
    """A change sqlorch must absorb: build, change the sources, run ``args``: exit 0."""
    return Case(case_id, FILES, args, 0, expect, None, SOURCES, BUILT, between)


EXACT_CASES = [
    case("cursor-tie-append-only", (f"INSERT INTO raw.orders VALUES (501, 7, 9.99, {T0})",)),
    case(
        "cursor-tie-keyed",
        ("INSERT INTO raw.customers SELECT 201, 'same second', max(updated_at) FROM raw.customers",),
    ),
    case("update-without-cursor-move", ("UPDATE raw.customers SET name = 'quiet' WHERE customer_id = 3",)),
    case(
        "column-type-widened",
        (
            "ALTER TABLE raw.orders ALTER amount TYPE DOUBLE",
            "INSERT INTO raw.orders VALUES (777, 7, 77.777, TIMESTAMP '2026-01-02')",
        ),
    ),
    case(
        "column-added",
        (
            "ALTER TABLE raw.orders ADD COLUMN channel VARCHAR",
            "INSERT INTO raw.orders VALUES (778, 8, 1.00, TIMESTAMP '2026-01-02', 'web')",
        ),
        expect=("source raw.orders gained column channel",),
    ),
    case(
        "unread-column-dropped",
        ("ALTER TABLE raw.customers ADD COLUMN note VARCHAR", "ALTER TABLE raw.customers DROP COLUMN note"),
    ),
    case(
        "append-only-truncated-and-reloaded",
        (
            "CREATE TABLE raw.keep AS SELECT * FROM raw.orders WHERE order_id % 2 = 0",
            "DELETE FROM raw.orders",
            "INSERT INTO raw.orders SELECT * FROM raw.keep",
            "DROP TABLE raw.keep",
        ),
    ),
    case(
        "keyed-source-recreated",
        (
            "DROP TABLE raw.customers",
            "CREATE TABLE raw.customers (customer_id INTEGER, name VARCHAR, updated_at TIMESTAMP)",
            "INSERT INTO raw.customers VALUES (1, 'back', TIMESTAMP '2025-01-01')",
        ),
    ),
    case("append-only-late-row", ("INSERT INTO raw.orders VALUES (900, 9, 3.00, TIMESTAMP '2025-06-01')",)),
]


@pytest.mark.parametrize("hostile", EXACT_CASES, ids=lambda c: c.id)
def test_source_change_is_absorbed_exactly(hostile: Case, tmp_path: Path) -> None:
    run_case(hostile, tmp_path)
    assert mismatches(tmp_path / "project") == {}


def test_plan_after_an_added_column_names_the_reason(tmp_path: Path) -> None:
    added = case(
        "column-added-plan",
        ("ALTER TABLE raw.orders ADD COLUMN channel VARCHAR",),
        args=("plan",),
        expect=("source raw.orders gained column channel",),
    )
    run = run_case(added, tmp_path)
    assert "chg__raw__orders" not in run.output


def test_stale_shadow_gives_no_duplicate_keys(tmp_path: Path) -> None:
    """Report 2: an update the cursor missed, then a later one it sees."""
    run_case(EXACT_CASES[2], tmp_path)
    root = tmp_path / "project"
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        con.execute(
            "UPDATE raw.customers SET name = 'again', updated_at = TIMESTAMP '2026-02-01' WHERE customer_id = 3"
        )
    assert run_cli("build", "--project-dir", root).exit_code == 0
    assert mismatches(root) == {}
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        counts = con.execute("SELECT count(*), count(DISTINCT customer_id) FROM staging.stg_customers").fetchall()
    assert counts == [(200, 200)]


def test_widened_type_stays_exact_after_full_refresh(tmp_path: Path) -> None:
    run_case(EXACT_CASES[3], tmp_path)
    root = tmp_path / "project"
    assert run_cli("build", "--full-refresh", "--project-dir", root).exit_code == 0
    assert mismatches(root) == {}


def test_renamed_column_fails_its_reader_then_builds_once_fixed(tmp_path: Path) -> None:
    renamed = Case(
        "column-renamed-under-a-reader",
        FILES,
        ("build",),
        expect_exit=1,
        expect=("name",),
        location=r"stg_customers\.sql",
        sources_sql=SOURCES,
        before=BUILT,
        between_sql=("ALTER TABLE raw.customers RENAME COLUMN name TO full_name",),
    )
    run_case(renamed, tmp_path)
    root = tmp_path / "project"
    (root / "models/staging/stg_customers.sql").write_text(
        "SELECT customer_id, full_name AS name, updated_at FROM raw.customers\n"
    )
    fixed = run_cli("build", "--project-dir", root)
    assert fixed.exit_code == 0, fixed.output
    assert mismatches(root) == {}
