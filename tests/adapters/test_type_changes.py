"""A source column whose TYPE changes under built models (DuckDB file, Postgres stand-in).

Each case builds a project (an append-only source, a keyed source; row-level, GROUP BY,
join, window and downstream models), alters one source column's type, changes rows, and
builds again: every model table must equal its SQL evaluated from scratch, column types
included (a table left with the old types holds values cast to them: a decimal rounded, a
timestamp cut to a date, a CHAR padded), and ``plan`` must say what ``build`` does: the
readers rebuild, saying which column changed from what to what. A keyed source's column no
model names is not captured (``capture.captured_columns``): its type may change, and its
readers stay incremental.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlglot

from sqlorch import api
from sqlorch.adapters.base import Adapter
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse, _Servers, _warehouse
from tests.adapters.test_conformance import build, create_table
from tests.adapters.test_schema_event_histories import differences
from tests.conftest import write_files

PROJECT = {
    "models/sources.yml": """
        sources:
          raw.orders: {cursor: loaded_at, append_only: true}
          raw.customers: {cursor: updated_at, unique_key: customer_id}
          raw.items: {unique_key: item_id}
    """,
    "models/stg/orders.sql": "SELECT order_id, customer_id, amount, placed FROM raw.orders",
    "models/mart/revenue.sql": """
        SELECT customer_id, SUM(amount) AS total, COUNT(*) AS n FROM raw.orders GROUP BY customer_id
    """,
    "models/mart/by_region.sql": """
        SELECT c.region, SUM(o.amount) AS total, COUNT(*) AS n
        FROM raw.orders AS o JOIN raw.customers AS c ON c.customer_id = o.customer_id
        GROUP BY c.region
    """,
    "models/mart/ranked.sql": """
        SELECT order_id, customer_id, amount,
               ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY order_id) AS rn
        FROM raw.orders
    """,
    "models/mart/paid.sql": "SELECT order_id, customer_id FROM raw.orders WHERE status = 'paid'",
    "models/mart/customers.sql": "SELECT customer_id, region, score FROM raw.customers",
    "models/mart/all_customers.sql": "SELECT * FROM raw.customers",
    "models/mart/items.sql": "SELECT item_id, qty * price AS value FROM raw.items",
    "models/mart/fx.sql": "SELECT currency, MAX(rate) AS rate FROM raw.fx GROUP BY currency",
    "models/mart/top.sql": "SELECT customer_id, total FROM mart.revenue WHERE total > 10",
}
ORDERS, CUSTOMERS = TableRef("raw", "orders"), TableRef("raw", "customers")
ITEMS, FX = TableRef("raw", "items"), TableRef("raw", "fx")  # keyed without a cursor; nothing declared
BASE = {
    ORDERS: {
        "order_id": "INTEGER",
        "customer_id": "INTEGER",
        "amount": "INTEGER",
        "status": "VARCHAR",
        "placed": "DATE",
        "loaded_at": "TIMESTAMP",
    },
    CUSTOMERS: {
        "customer_id": "INTEGER",
        "region": "VARCHAR",
        "score": "DECIMAL(10,2)",
        "updated_at": "TIMESTAMP",
        "code": "INTEGER",  # read by no model but mart.all_customers (SELECT *)
    },
    ITEMS: {"item_id": "INTEGER", "qty": "INTEGER", "price": "DECIMAL(12,2)", "code": "INTEGER"},  # code: read by none
    FX: {"currency": "VARCHAR", "rate": "DOUBLE"},
}


@pytest.fixture(params=["duckdb", "postgres"])
def typed_warehouse(request: pytest.FixtureRequest, standin_servers: _Servers, tmp_path: Path) -> Iterator[Warehouse]:
    """DuckDB and Postgres: the two targets whose catalogs spell types differently
    (``DECIMAL(12,2)`` / ``numeric(12,2)``, ``VARCHAR`` / ``character varying``)."""
    yield from _warehouse(request.param, standin_servers, tmp_path)


def run(adapter: Adapter, sql: str) -> None:
    """``sql`` as DuckDB and Postgres both read it (in Postgres' terms: DuckDB's dialect
    reads ``VARCHAR(8)`` as ``TEXT``)."""
    adapter.execute(sqlglot.parse_one(sql, read="postgres"))


def create(adapter: Adapter) -> None:
    for table, columns in BASE.items():
        create_table(adapter, table, columns)
    day = dt.datetime(2026, 1, 1)
    adapter.insert_rows(
        ORDERS,
        list(BASE[ORDERS]),
        [(i, i % 4, 3 * i, "paid" if i % 2 else "open", day.date(), day) for i in range(1, 13)],
    )
    adapter.insert_rows(CUSTOMERS, list(BASE[CUSTOMERS]), [(c, f"r{c % 2}", c + 0.25, day, 10 * c) for c in range(4)])
    adapter.insert_rows(ITEMS, list(BASE[ITEMS]), [(i, i, 1.5, 10 * i) for i in range(5)])
    adapter.insert_rows(FX, list(BASE[FX]), [("EUR", 1.125), ("USD", 1.0)])


def more_rows(adapter: Adapter, amount: str, placed: str) -> None:
    """New orders (``amount`` and ``placed`` as SQL of the column's type now) and a changed
    customer, stamped after everything captured so far."""
    stamp = "TIMESTAMP '2026-01-02 10:00:00'"
    for order_id in (13, 14):
        run(
            adapter,
            f"INSERT INTO raw.orders VALUES ({order_id}, {order_id % 4}, {amount}, 'paid', {placed}, {stamp})",
        )
    run(adapter, f"UPDATE raw.customers SET score = score + 1, updated_at = {stamp} WHERE customer_id = 1")
    run(adapter, "UPDATE raw.items SET qty = qty + 1 WHERE item_id = 2")
    run(adapter, "INSERT INTO raw.fx VALUES ('GBP', 1.25)")


CASES = {
    # (table, column, its new type, the new orders' amount and placed as SQL of their type now)
    "amount INTEGER -> DECIMAL(12,2)": ("raw.orders", "amount", "DECIMAL(12,2)", "2.75", "DATE '2026-01-02'"),
    "placed DATE -> TIMESTAMP": ("raw.orders", "placed", "TIMESTAMP", "5", "TIMESTAMP '2026-01-02 10:30:00'"),
    "status VARCHAR -> VARCHAR(8), read in WHERE only": (
        "raw.orders",
        "status",
        "VARCHAR(8)",
        "5",
        "DATE '2026-01-02'",
    ),
    "score DECIMAL(10,2) -> DECIMAL(10,3)": ("raw.customers", "score", "DECIMAL(10,3)", "5", "DATE '2026-01-02'"),
    "region VARCHAR -> CHAR(4)": ("raw.customers", "region", "CHAR(4)", "5", "DATE '2026-01-02'"),
    "customer_id INTEGER -> BIGINT, a join key": ("raw.customers", "customer_id", "BIGINT", "5", "DATE '2026-01-02'"),
    "qty INTEGER -> DECIMAL(12,3), keyed source without a cursor": (
        "raw.items",
        "qty",
        "DECIMAL(12,3)",
        "5",
        "DATE '2026-01-02'",
    ),
    "rate DOUBLE -> DECIMAL(10,4), source with nothing declared": (
        "raw.fx",
        "rate",
        "DECIMAL(10,4)",
        "5",
        "DATE '2026-01-02'",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_type_change_under_built_models_is_exact(typed_warehouse: Warehouse, tmp_path: Path, case: str) -> None:
    table, column, new_type, amount, placed = CASES[case]
    project = write_files(tmp_path / "project", PROJECT)
    options = api.Options(project_dir=project, profiles_dir=typed_warehouse.write_profiles())
    create(typed_warehouse.connect())
    build(typed_warehouse, project)
    assert differences(typed_warehouse, project) == {}
    adapter = typed_warehouse.connect()
    ref = TableRef(*table.split("."))
    before = (adapter.columns(ref) or {})[column].sql(adapter.dialect)
    run(adapter, f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {new_type}")
    after = (adapter.columns(ref) or {})[column].sql(adapter.dialect)
    more_rows(adapter, amount, placed)
    typed_warehouse.close_all()  # DuckDB: plan opens the file read-only, alone
    planned = {str(step.ref): step for step in api.plan(options).steps}
    results = build(typed_warehouse, project)
    assert differences(typed_warehouse, project) == {}, results
    readers = [name for name in planned if table in PROJECT[f"models/{name.replace('.', '/')}.sql"]]
    assert readers
    for name in readers:  # the plan says what the build does, and why
        assert (planned[name].action, planned[name].reason) == (results[name]["action"], results[name]["reason"])
        if before != after:  # DuckDB: VARCHAR(8) and CHAR(4) are VARCHAR
            assert results[name]["action"] == "full", (name, results[name])
            assert f"source {table}: column {column} {before} -> {after}" in results[name]["reason"]


@pytest.mark.parametrize("using", ["", " USING 'x' || code"])
@pytest.mark.parametrize("table", ["raw.items", "raw.customers"])
def test_a_type_change_of_a_column_no_model_names_keeps_its_readers_incremental(
    typed_warehouse: Warehouse, tmp_path: Path, table: str, using: str
) -> None:
    """A keyed source's column no model names (with a cursor or without) is not captured:
    its type change, and the values the source's own conversion (``USING``) gives it, are
    no change of what a model reads. The capture sees the updated rows only."""
    files = {path: sql for path, sql in PROJECT.items() if path != "models/mart/all_customers.sql"}
    project = write_files(tmp_path / "project", files)
    options = api.Options(project_dir=project, profiles_dir=typed_warehouse.write_profiles())
    create(typed_warehouse.connect())
    build(typed_warehouse, project)
    adapter = typed_warehouse.connect()
    run(adapter, f"ALTER TABLE {table} ALTER COLUMN code TYPE VARCHAR{using}")
    more_rows(adapter, "5", "DATE '2026-01-02'")  # an update in each keyed source
    typed_warehouse.close_all()  # DuckDB: plan opens the file read-only, alone
    plan = api.plan(options)
    planned = {str(step.ref): step for step in plan.steps}
    results = build(typed_warehouse, project)
    assert differences(typed_warehouse, project) == {}, results
    for name in ("mart.items", "mart.customers"):
        assert (planned[name].action, planned[name].reason) == (results[name]["action"], results[name]["reason"])
        assert results[name]["action"] == "incremental", results
    source = next(change for change in plan.sources if change.source == table)
    assert "code" not in source.reason, source.reason
    assert (source.change, source.rows) == ("delta", 2)  # the update's old and new images


def test_a_followed_type_alone_changes_nothing_and_is_followed_once(typed_warehouse: Warehouse, tmp_path: Path) -> None:
    """No row changed but the type of a column no model names: nothing to rebuild or merge,
    and the next build finds the source unchanged (its shadow and fingerprint follow)."""
    files = {path: sql for path, sql in PROJECT.items() if path != "models/mart/all_customers.sql"}
    project = write_files(tmp_path / "project", files)
    options = api.Options(project_dir=project, profiles_dir=typed_warehouse.write_profiles())
    create(typed_warehouse.connect())
    build(typed_warehouse, project)
    run(typed_warehouse.connect(), "ALTER TABLE raw.customers ALTER COLUMN code TYPE BIGINT")
    typed_warehouse.close_all()
    for _ in range(2):
        plan = api.plan(options)
        results = build(typed_warehouse, project)
        assert {name: r["action"] for name, r in results.items()} == {str(step.ref): step.action for step in plan.steps}
        assert {r["action"] for r in results.values()} == {"skip"}, results
        assert differences(typed_warehouse, project) == {}
    source = next(change for change in plan.sources if change.source == "raw.customers")
    assert (source.change, source.reason) == ("none", "unchanged")


def test_a_value_of_a_column_no_model_reads_is_never_captured_so_never_converted(
    typed_warehouse: Warehouse, tmp_path: Path
) -> None:
    """A junk row deleted, then a column no model reads retyped to a type its value would
    not convert to: the shadow never held that column (``capture.captured_columns``), so
    nothing captured needs converting and the readers stay incremental, as ``plan`` says."""
    files = {path: sql for path, sql in PROJECT.items() if path != "models/mart/all_customers.sql"}
    project = write_files(tmp_path / "project", files)
    options = api.Options(project_dir=project, profiles_dir=typed_warehouse.write_profiles())
    adapter = typed_warehouse.connect()
    create(adapter)
    adapter.insert_rows(ITEMS, list(BASE[ITEMS]), [(9, 9, 1.5, 100_000)])  # no SMALLINT holds its code
    build(typed_warehouse, project)
    adapter = typed_warehouse.connect()
    run(adapter, "DELETE FROM raw.items WHERE item_id = 9")
    # the kept rows convert as they are (DuckDB's ALTER also converts rows deleted since its
    # last checkpoint: LEAST keeps them in range)
    run(adapter, "ALTER TABLE raw.items ALTER COLUMN code TYPE SMALLINT USING LEAST(code, 30000)")
    more_rows(adapter, "5", "DATE '2026-01-02'")
    typed_warehouse.close_all()  # DuckDB: plan opens the file read-only, alone
    plan = api.plan(options)
    planned = {str(step.ref): step for step in plan.steps}
    results = build(typed_warehouse, project)
    assert differences(typed_warehouse, project) == {}, results
    assert (planned["mart.items"].action, planned["mart.items"].reason) == (
        results["mart.items"]["action"],
        results["mart.items"]["reason"],
    )
    assert results["mart.items"]["action"] == "incremental", results
    source = next(change for change in plan.sources if change.source == "raw.items")
    assert source.change == "delta" and "code" not in source.reason, source
