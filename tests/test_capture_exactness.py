"""Change capture stays exact under the source changes real projects see every week
(issue 9, reports 1-4 and the schema events): ties at the cursor, a shadow that went
stale, column type changes, added/dropped columns, recreated and truncated tables, seeds.

Every test builds a small project on a real DuckDB file through the CLI and compares each
model table with its SQL evaluated from scratch on the same sources."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from tests.conftest import run_cli, write_files

SOURCES_YML = """
sources:
  raw.orders: {cursor: loaded_at, append_only: true}
  raw.customers: {cursor: updated_at, unique_key: customer_id}
"""

MODELS = {
    "staging.stg_orders": "SELECT order_id, customer_id, amount, loaded_at FROM raw.orders",
    "staging.stg_customers": "SELECT customer_id, name, updated_at FROM raw.customers",
    "marts.revenue": (
        "SELECT o.customer_id, count(*) AS orders, sum(o.amount) AS revenue\n"
        "FROM staging.stg_orders AS o GROUP BY o.customer_id"
    ),
    "marts.customer_orders": (
        "SELECT c.customer_id, c.name, o.order_id, o.amount\n"
        "FROM staging.stg_customers AS c JOIN staging.stg_orders AS o ON o.customer_id = c.customer_id"
    ),
}

T0 = "TIMESTAMP '2026-01-01 00:00:00'"


def make(root: Path, extra: dict[str, str] | None = None) -> Path:
    files = {"models/sources.yml": SOURCES_YML}
    models = {**MODELS, **(extra or {})}
    for ref, text in models.items():
        schema, name = ref.split(".")
        files[f"models/{schema}/{name}.sql"] = text
    write_files(root, files)
    sql(
        root,
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.orders (order_id INTEGER, customer_id INTEGER, amount DECIMAL(12,2), loaded_at TIMESTAMP)",
        "CREATE TABLE raw.customers (customer_id INTEGER, name VARCHAR, updated_at TIMESTAMP)",
        f"INSERT INTO raw.customers SELECT i, 'c' || i, {T0} + to_minutes(i) FROM range(1, 11) t(i)",
        f"INSERT INTO raw.orders SELECT i, 1 + i % 10, i * 1.25, {T0} FROM range(1, 21) t(i)",
    )
    return root


def sql(root: Path, *statements: str) -> None:
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        for statement in statements:
            con.execute(statement)


def build(root: Path, *args: str) -> dict[str, dict]:
    run = run_cli("build", "--project-dir", root, *args)
    assert run.exception is None, f"{run.exception!r}\n{run.output}"
    assert run.exit_code == 0, run.output
    assert "Traceback" not in run.output
    return {r["model"]: r for r in json.loads((root / "target/run_results.json").read_text())["results"]}


def mismatches(root: Path) -> dict[str, tuple[list, list]]:
    """Per model whose table differs from its SQL run on the current sources: (only in
    the table, only in the reference)."""
    out = {}
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        for path in sorted((root / "models").rglob("*.sql")):
            ref = f"{path.parent.name}.{path.stem}"
            query = path.read_text()
            extra = con.execute(f"SELECT * FROM {ref} EXCEPT ALL ({query})").fetchall()
            missing = con.execute(f"({query}) EXCEPT ALL SELECT * FROM {ref}").fetchall()
            got = [(c[0], c[1]) for c in con.execute(f"DESCRIBE SELECT * FROM {ref}").fetchall()]
            want = [(c[0], c[1]) for c in con.execute(f"DESCRIBE {query}").fetchall()]
            if extra or missing or got != want:
                out[ref] = (extra, missing) if extra or missing else ([got], [want])
    return out


def assert_exact(root: Path) -> None:
    assert mismatches(root) == {}


def test_append_only_tie_at_the_cursor_is_captured(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    # a row stamped with the same second as the last captured batch, and a duplicate row
    sql(
        root,
        f"INSERT INTO raw.orders VALUES (21, 3, 9.99, {T0})",
        f"INSERT INTO raw.orders VALUES (1, 2, 1.25, {T0})",
    )
    build(root)
    assert_exact(root)
    # a later batch, then ties again at the new maximum
    sql(root, "INSERT INTO raw.orders VALUES (22, 4, 5.00, TIMESTAMP '2026-01-02')")
    build(root)
    sql(root, "INSERT INTO raw.orders VALUES (23, 4, 5.00, TIMESTAMP '2026-01-02')")
    sql(root, "INSERT INTO raw.orders VALUES (22, 4, 5.00, TIMESTAMP '2026-01-02')")
    results = build(root)
    assert results["staging.stg_orders"]["action"] == "incremental", results["staging.stg_orders"]
    assert_exact(root)
    assert build(root)["staging.stg_orders"]["action"] == "skip"


def test_keyed_tie_at_the_cursor_is_captured(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(root, "INSERT INTO raw.customers SELECT 11, 'late but same second', max(updated_at) FROM raw.customers")
    build(root)
    assert_exact(root)
    # found by the cursor (">=" the watermark), not by the full diff that checks it
    assert not [r for r in caplog.records if "diffed by key in full" in r.getMessage()]


def test_null_cursor_rows_are_captured(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        "INSERT INTO raw.orders VALUES (30, 1, 1.00, NULL)",
        "INSERT INTO raw.customers VALUES (30, 'no cursor', NULL)",
    )
    build(root)
    assert_exact(root)


def test_update_without_moving_the_cursor_never_leaves_a_stale_shadow(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(root, "UPDATE raw.customers SET name = 'renamed quietly' WHERE customer_id = 3")
    build(root)
    assert_exact(root)
    sql(
        root,
        "UPDATE raw.customers SET name = 'renamed again', updated_at = TIMESTAMP '2026-02-01' WHERE customer_id = 3",
    )
    build(root)
    assert_exact(root)
    with duckdb.connect(str(root / "warehouse.duckdb")) as con:
        assert con.execute("SELECT count(*), count(DISTINCT customer_id) FROM staging.stg_customers").fetchall() == [
            (10, 10)
        ]


def test_full_refresh_resyncs_a_shadow_changed_behind_sqlorchs_back(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    # the shadow differs from the source and its recorded fingerprint no longer describes it
    sql(root, "DELETE FROM _sqlorch.shadow__raw__customers WHERE customer_id = 5")
    build(root, "--full-refresh")
    assert_exact(root)
    sql(root, "UPDATE raw.customers SET name = 'x', updated_at = TIMESTAMP '2026-02-01' WHERE customer_id = 5")
    build(root)
    assert_exact(root)


def test_widened_column_type_loses_no_row(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        "ALTER TABLE raw.orders ALTER amount TYPE DOUBLE",
        "INSERT INTO raw.orders VALUES (77, 7, 77.777, TIMESTAMP '2026-01-03')",
    )
    build(root)
    assert_exact(root)
    sql(root, "INSERT INTO raw.orders VALUES (78, 7, 1.001, TIMESTAMP '2026-01-04')")
    build(root)
    assert_exact(root)
    build(root, "--full-refresh")
    assert_exact(root)


def test_added_column_keeps_explicit_readers_incremental_and_rebuilds_star_readers(tmp_path: Path) -> None:
    root = make(
        tmp_path / "p",
        {
            "marts.all_orders": "WITH o AS (SELECT * FROM raw.orders) SELECT * FROM o",
            "marts.all_orders_copy": "SELECT * FROM marts.all_orders",
        },
    )
    build(root)
    sql(
        root,
        "ALTER TABLE raw.orders ADD COLUMN channel VARCHAR",
        "ALTER TABLE raw.customers ADD COLUMN tier VARCHAR DEFAULT 'gold'",
        "INSERT INTO raw.orders VALUES (40, 2, 4.00, TIMESTAMP '2026-01-05', 'web')",
    )
    plan = run_cli("plan", "--project-dir", root)
    assert plan.exit_code == 0, plan.output
    results = build(root)
    assert_exact(root)
    assert results["staging.stg_orders"]["action"] == "incremental", results["staging.stg_orders"]
    assert results["marts.all_orders"]["action"] == "full"
    assert results["marts.all_orders"]["reason"] == "source raw.orders gained column channel"
    assert results["marts.all_orders_copy"]["action"] == "full"
    assert "marts.all_orders gained column channel" in results["marts.all_orders_copy"]["reason"]
    sql(root, "INSERT INTO raw.orders VALUES (41, 2, 4.00, TIMESTAMP '2026-01-06', 'shop')")
    results = build(root)
    assert_exact(root)
    assert results["marts.all_orders"]["action"] == "incremental", results["marts.all_orders"]


def test_column_added_with_a_default_to_an_append_only_source_keeps_it_append_only(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(root, "ALTER TABLE raw.orders ADD COLUMN channel VARCHAR DEFAULT 'web'")
    build(root)
    sql(root, f"INSERT INTO raw.orders VALUES (60, 1, 2.00, {T0}, 'web')")  # a tie, after the column came
    results = build(root)
    assert results["staging.stg_orders"]["action"] == "incremental", results["staging.stg_orders"]
    assert_exact(root)


def test_dropped_column_no_model_reads_is_exact(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    sql(root, "ALTER TABLE raw.customers ADD COLUMN unused VARCHAR DEFAULT 'u'")
    build(root)
    sql(
        root,
        "ALTER TABLE raw.customers DROP COLUMN unused",
        "UPDATE raw.customers SET name = 'n', updated_at = TIMESTAMP '2026-02-01' WHERE customer_id = 2",
    )
    results = build(root)
    assert results["staging.stg_customers"]["action"] == "incremental", results["staging.stg_customers"]
    assert_exact(root)


def test_renamed_column_fails_its_reader_until_fixed_then_builds_without_a_manual_step(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    build(root)
    sql(root, "ALTER TABLE raw.customers RENAME COLUMN name TO full_name")
    run = run_cli("build", "--project-dir", root)
    assert run.exit_code == 1 and "Traceback" not in run.output, run.output
    assert "name" in run.output
    (root / "models/staging/stg_customers.sql").write_text(
        "SELECT customer_id, full_name AS name, updated_at FROM raw.customers"
    )
    build(root)
    assert_exact(root)


@pytest.mark.parametrize("source", ["raw.orders", "raw.customers"])
@pytest.mark.parametrize("event", ["truncate", "recreate"])
def test_truncated_or_recreated_source_is_recaptured(tmp_path: Path, source: str, event: str) -> None:
    root = make(tmp_path / "p")
    build(root)
    if event == "truncate":
        # truncate and reload fewer rows, with the same maximum cursor
        keep = "order_id % 2 = 0" if source == "raw.orders" else "customer_id % 2 = 0"
        sql(
            root,
            f"CREATE TABLE raw.keep AS SELECT * FROM {source} WHERE {keep}",
            f"DELETE FROM {source}",
            f"INSERT INTO {source} SELECT * FROM raw.keep",
            "DROP TABLE raw.keep",
        )
    else:
        # recreated with other rows and an older cursor
        sql(root, f"CREATE OR REPLACE TABLE {source} AS SELECT * FROM {source} WHERE false")
        if source == "raw.orders":
            sql(root, "INSERT INTO raw.orders VALUES (1, 1, 100.00, TIMESTAMP '2025-06-01')")
        else:
            sql(root, "INSERT INTO raw.customers VALUES (1, 'again', TIMESTAMP '2025-06-01')")
    build(root)
    assert_exact(root)


def test_late_row_below_the_append_only_cursor_is_recaptured(tmp_path: Path) -> None:
    root = make(tmp_path / "p")
    sql(root, "INSERT INTO raw.orders VALUES (50, 1, 5.00, TIMESTAMP '2026-01-10')")
    build(root)
    sql(root, "INSERT INTO raw.orders VALUES (51, 1, 6.00, TIMESTAMP '2026-01-05')")
    build(root)
    assert_exact(root)


def test_seed_header_and_type_changes_are_exact(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_files(
        root,
        {
            "seeds/rates.csv": "code,rate\nUS,1\nDE,2\n",
            "models/marts/rated.sql": "SELECT code, rate * 2 AS doubled FROM seeds.rates",
            "models/marts/all_rates.sql": "SELECT * FROM seeds.rates",
            "models/marts/rates_copy.sql": "SELECT code, rate FROM marts.all_rates",
        },
    )
    build(root)
    (root / "seeds/rates.csv").write_text("code,rate\nUS,1.5\nDE,2\n")  # BIGINT -> DOUBLE
    assert build(root)["seeds.rates"]["reason"] == "CSV columns or their inferred types changed"
    assert_exact(root)
    (root / "seeds/rates.csv").write_text("code,rate,note\nUS,1.5,x\nDE,2,\n")  # a new column
    build(root)
    assert_exact(root)
    (root / "seeds/rates.csv").write_text("code,rate\nUS,1.5\nDE,3\n")  # dropped again, a value changed
    build(root)
    assert_exact(root)
    (root / "seeds/rates.csv").write_text("code,rate\nUS,1.5\nDE,4\n")  # same columns: diffed
    assert build(root)["seeds.rates"]["action"] == "incremental"
    assert_exact(root)


def test_change_log_and_shadow_that_followed_a_new_column_unevenly_are_repaired(tmp_path: Path) -> None:
    """A warehouse without transactions can stop between rebuilding the change log and the
    shadow with a new column: the next build rebuilds each from its own columns."""
    root = make(tmp_path / "p")
    build(root)
    sql(
        root,
        "ALTER TABLE raw.customers ADD COLUMN tier VARCHAR",
        "ALTER TABLE _sqlorch.chg__raw__customers ADD COLUMN tier VARCHAR",
        "UPDATE raw.customers SET tier = 'gold', updated_at = TIMESTAMP '2026-03-01' WHERE customer_id = 4",
    )
    build(root)
    assert_exact(root)
