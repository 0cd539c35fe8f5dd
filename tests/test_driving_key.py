"""A join that keeps rows one for one is keyed by its FROM side's columns (``analysis/keys.py``,
``_driving_side_key``): the affected-key filter then matches that side's rows below the join.
The key analysis on SQL in, and on a real DuckDB file that incremental builds of such a model,
with changes on either side of the join, leave the table equal to its SQL."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from sqlorch import api
from sqlorch.analysis.keys import analyse_keys
from sqlorch.api import Options

SCHEMA = {
    "raw": {
        "orders": {"order_id": "INT", "customer_id": "INT", "amount": "INT", "status": "VARCHAR"},
        "customers": {"customer_id": "INT", "name": "VARCHAR", "plan": "VARCHAR"},
    }
}


def key_of(
    sql: str, declared: tuple[str, ...] = (), identities: dict[tuple[str, str], tuple[str, ...]] | None = None
) -> tuple[list[str] | None, bool]:
    schema = MappingSchema(SCHEMA, dialect="duckdb")
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=schema, dialect="duckdb")
    assert isinstance(query, exp.Query)
    keys = analyse_keys(query, declared, schema, "duckdb", identities)
    return keys.key, keys.unique


ORDER_IDENTITY = {("raw", "orders"): ("order_id",)}


@pytest.mark.parametrize(
    ("sql", "key"),
    [
        # the FROM table's identity passed through: the key narrows to it
        ("SELECT order_id, customer_id, amount FROM raw.orders", ["order_id"]),
        ("SELECT amount, order_id AS id FROM raw.orders WHERE amount > 3", ["id"]),
        (
            "SELECT o.order_id, o.customer_id, o.amount, c.plan FROM raw.orders AS o "
            "JOIN raw.customers AS c ON o.customer_id = c.customer_id",
            ["order_id"],
        ),
        # not passed through, or not row-level: the key stands
        ("SELECT order_id + 1 AS x, amount FROM raw.orders", ["x", "amount"]),
        ("SELECT customer_id, amount FROM raw.orders", ["customer_id", "amount"]),
        (
            "SELECT order_id, customer_id, count(*) AS n FROM raw.orders GROUP BY order_id, customer_id",
            ["order_id", "customer_id"],
        ),
        (
            "SELECT order_id, customer_id, row_number() OVER (PARTITION BY customer_id ORDER BY order_id) AS nth "
            "FROM raw.orders",
            ["customer_id"],
        ),
        ("SELECT DISTINCT order_id, amount FROM raw.orders", ["order_id", "amount"]),
        # the identity of the joined side does not key the FROM side's rows
        (
            "SELECT c.plan, o.order_id FROM raw.customers AS c LEFT JOIN raw.orders AS o "
            "ON o.customer_id = c.customer_id",
            ["plan", "order_id"],
        ),
    ],
)
def test_a_row_level_key_narrows_to_its_inputs_identity(sql: str, key: list[str]) -> None:
    assert key_of(sql, identities=ORDER_IDENTITY)[0] == key


@pytest.mark.parametrize(
    ("sql", "key"),
    [
        # the FROM side gives most of the key: its columns alone
        (
            "SELECT o.order_id, o.customer_id, o.amount, c.plan FROM raw.orders AS o "
            "JOIN raw.customers AS c ON o.customer_id = c.customer_id",
            ["order_id", "customer_id", "amount"],
        ),
        (
            "SELECT o.order_id, o.status AS st, c.plan FROM raw.orders AS o "
            "LEFT JOIN raw.customers AS c ON o.customer_id = c.customer_id",
            ["order_id", "st"],
        ),
        # one column of the FROM side against the joined side's: every anchor, as before
        (
            "SELECT c.plan, o.order_id FROM raw.customers AS c LEFT JOIN raw.orders AS o "
            "ON o.customer_id = c.customer_id",
            ["plan", "order_id"],
        ),
        # an expression is not read straight from the FROM side
        (
            "SELECT o.order_id + 1 AS x, c.plan FROM raw.orders AS o JOIN raw.customers AS c "
            "ON o.customer_id = c.customer_id",
            ["x", "plan"],
        ),
        # no join: every anchor
        ("SELECT order_id, customer_id, amount FROM raw.orders", ["order_id", "customer_id", "amount"]),
        # grouped, windowed or DISTINCT joins keep their keys
        (
            "SELECT o.customer_id, o.status, c.plan, count(*) AS n FROM raw.orders AS o "
            "JOIN raw.customers AS c ON o.customer_id = c.customer_id GROUP BY o.customer_id, o.status, c.plan",
            ["customer_id", "status", "plan"],
        ),
        (
            "SELECT DISTINCT o.customer_id, o.status, c.plan FROM raw.orders AS o "
            "JOIN raw.customers AS c ON o.customer_id = c.customer_id",
            ["customer_id", "status", "plan"],
        ),
        (
            "SELECT o.order_id, o.customer_id, c.plan, row_number() OVER (PARTITION BY o.customer_id "
            "ORDER BY o.order_id) AS nth FROM raw.orders AS o JOIN raw.customers AS c ON o.customer_id = c.customer_id",
            ["customer_id"],
        ),
    ],
)
def test_the_key_of_a_join(sql: str, key: list[str]) -> None:
    assert key_of(sql)[0] == key


def test_a_declared_unique_key_wins() -> None:
    sql = (
        "SELECT o.order_id, o.customer_id, o.amount, c.plan FROM raw.orders AS o "
        "JOIN raw.customers AS c ON o.customer_id = c.customer_id"
    )
    assert key_of(sql, ("order_id",)) == (["order_id"], True)


SOURCES = "sources:\n  raw.orders: {unique_key: order_id}\n  raw.customers: {unique_key: customer_id}\n"
ENRICHED = (
    "SELECT o.order_id, o.customer_id, o.amount, o.status, c.plan\n"
    "FROM raw.orders AS o JOIN raw.customers AS c ON o.customer_id = c.customer_id\n"
)
ENRICHED_LEFT = (
    "SELECT o.order_id, o.customer_id, o.amount, o.status, c.plan\n"
    "FROM raw.orders AS o LEFT JOIN raw.customers AS c ON o.customer_id = c.customer_id\n"
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "models" / "marts").mkdir(parents=True)
    (tmp_path / "models" / "sources.yml").write_text(SOURCES)
    (tmp_path / "models" / "marts" / "enriched.sql").write_text(ENRICHED)
    (tmp_path / "models" / "marts" / "enriched_left.sql").write_text(ENRICHED_LEFT)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("CREATE SCHEMA raw")
        con.execute(
            "CREATE TABLE raw.customers AS SELECT range AS customer_id, 'c' || range AS name, "
            "['free', 'pro', 'team'][1 + range % 3] AS plan FROM range(50)"
        )
        con.execute(
            "CREATE TABLE raw.orders AS SELECT range AS order_id, "
            "CASE WHEN range % 97 = 0 THEN NULL ELSE range % 60 END AS customer_id, "
            "CAST(range % 13 AS INTEGER) AS amount, ['placed', 'paid'][1 + range % 2] AS status FROM range(1000)"
        )
    return tmp_path


def _differences(project: Path, model: str, sql: str) -> int:
    with duckdb.connect(str(project / "warehouse.duckdb"), read_only=True) as con:
        table = f"SELECT * FROM {model}"
        row = con.execute(
            f"SELECT (SELECT count(*) FROM (({table}) EXCEPT ALL ({sql}))) "
            f"+ (SELECT count(*) FROM (({sql}) EXCEPT ALL ({table})))"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE raw.orders SET amount = amount + 100, status = 'shipped' WHERE order_id IN (5, 6, 500)",
        "UPDATE raw.customers SET plan = 'gold' WHERE customer_id IN (7, 8)",  # many orders each
        "DELETE FROM raw.customers WHERE customer_id = 9",  # inner join drops, left join keeps with NULL
        "INSERT INTO raw.customers VALUES (55, 'c55', 'pro')",  # orders of customer 55 gain a match
        "UPDATE raw.orders SET customer_id = NULL WHERE order_id = 10",  # a NULL in the key
        "UPDATE raw.orders SET customer_id = 3 WHERE customer_id IS NULL",
    ],
)
def test_incremental_builds_of_a_join_keyed_by_its_from_side(project: Path, change: str, cli) -> None:
    api.build(Options(project_dir=project))
    with duckdb.connect(str(project / "warehouse.duckdb")) as con:
        con.execute(change)
    run = cli("plan", "--json", "--project-dir", project)
    assert run.exit_code == 0, run.output
    steps = {s["model"]: s for s in json.loads(run.output)["steps"]}
    for model in ("marts.enriched", "marts.enriched_left"):
        assert steps[model]["key"] == ["order_id"]  # raw.orders' unique_key, passed through
        assert steps[model]["action"] == "incremental"
    result = api.build(Options(project_dir=project))
    assert {r.model: r.action for r in result.results} == {
        "marts.enriched": "incremental",
        "marts.enriched_left": "incremental",
    }
    assert _differences(project, "marts.enriched", ENRICHED) == 0
    assert _differences(project, "marts.enriched_left", ENRICHED_LEFT) == 0


@pytest.mark.parametrize(
    ("sql", "complete", "identity_table"),
    [
        ("SELECT order_id, amount * 2 AS doubled FROM raw.orders WHERE amount > 3", True, True),
        ("SELECT amount, order_id AS id FROM raw.orders", True, True),
        # a join may give a FROM row several output rows: they are still that row's alone
        (
            "SELECT o.order_id, c.plan FROM raw.orders AS o JOIN raw.customers AS c ON o.customer_id = c.customer_id",
            True,
            True,
        ),
        # the input's log may hold only the differing rows of a key (an upstream model's key that may repeat)
        ("SELECT order_id, amount FROM raw.orders", False, False),
        # the identity not passed through whole, or not row-level
        ("SELECT order_id + 1 AS x, amount FROM raw.orders", True, False),
        ("SELECT DISTINCT order_id, amount FROM raw.orders", True, False),
    ],
)
def test_a_row_level_model_keyed_by_its_tables_identity(sql: str, complete: bool, identity_table: bool) -> None:
    """``identity_table``: what lets ``map changed rows`` follow that table's changes."""
    schema = MappingSchema(SCHEMA, dialect="duckdb")
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=schema, dialect="duckdb")
    assert isinstance(query, exp.Query)
    logs = {("raw", "orders")} if complete else set()
    keys = analyse_keys(query, (), schema, "duckdb", ORDER_IDENTITY, logs)
    assert keys.identity_table == (("raw", "orders") if identity_table else None)
    assert keys.identity == (("order_id",) if identity_table else ())
