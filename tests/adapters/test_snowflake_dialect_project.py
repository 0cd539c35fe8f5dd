"""A project written in the Snowflake dialect (unquoted names fold to upper case there)
builds on every target, its Snowflake stand-in included: a seed, a source with declared
``columns:`` and a two-level model chain, first in full, then incrementally."""

from __future__ import annotations

from pathlib import Path

from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import assert_models_match_their_sql, build, create_table
from tests.conftest import write_files

ORDERS = TableRef("raw", "orders")
ORDER_COLUMNS = {"id": "INT", "customer": "VARCHAR", "amount": "DECIMAL(10, 2)"}

PROJECT = {
    "sqlorch.yml": "dialect: snowflake\n",
    "seeds/labels.csv": "id,label\n0,zero\n1,one\n2,two\n",
    "models/sources.yml": """
        sources:
          raw.orders:
            unique_key: id
            columns: {id: INT, Customer: VARCHAR, amount: "NUMBER(10, 2)"}
    """,
    "models/staging/orders.sql": 'SELECT O.ID, o.CUSTOMER, o.Amount * 2 AS Doubled, S."LABEL" '
    "FROM raw.orders AS O JOIN seeds.labels AS S ON S.Id = O.id % 3",
    "models/marts/by_customer.sql": "SELECT Customer, LABEL, SUM(doubled) AS Total, COUNT(*) AS N "
    "FROM staging.orders GROUP BY customer, label",
}


def _orders(first: int, count: int) -> list[tuple[int, str, float]]:
    return [(key, f"c{key % 4}", key * 1.5) for key in range(first, first + count)]


def test_snowflake_dialect_project_builds(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, ORDERS, ORDER_COLUMNS)
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(0, 20))
    first = build(warehouse, project)
    assert {r["action"] for r in first.values()} == {"full"}, first
    sizes = assert_models_match_their_sql(warehouse, project)
    assert sizes == {"staging.orders": 20, "marts.by_customer": 12}

    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(20, 5))
    second = build(warehouse, project)
    assert second["staging.orders"]["action"] == "incremental", second
    sizes = assert_models_match_their_sql(warehouse, project)
    assert sizes == {"staging.orders": 25, "marts.by_customer": 12}
    staging = adapter.columns(TableRef("staging", "orders"))
    assert list(staging or {}) == ["id", "customer", "doubled", "label"]
