"""One conformance suite for every adapter: DuckDB and the Postgres, Snowflake, BigQuery stand-ins.

The invariant is checked the plain way: after each build, every model table equals its own
SQL run from scratch through the same adapter, as a multiset of rows.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from sqlorch import api
from sqlorch.adapters.base import Adapter
from sqlorch.errors import AdapterError
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.conftest import REPO, write_files

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


# Significant digits a fractional number is compared to: a float SUM differs in its last bits
# with the order rows are added in (which SQL leaves open: the same query run twice may
# differ), ~1e-15 relative; 12 digits still tell apart every cent of a DECIMAL(12, 2), and any
# error above 1e-12 of the value. (Rounding to 6 decimal places, before, let a DECIMAL sum off
# in its 7th decimal pass, and would have failed a large float on its noise.)
DIGITS = Context(prec=12)


def _normal(value: Any) -> Any:
    """One representation per value across drivers and Python literals (Decimal vs float sums,
    and so on): an integer exactly, a fractional number to ``DIGITS`` significant digits."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return DIGITS.create_decimal(repr(value))
    if isinstance(value, Decimal):
        return DIGITS.plus(value)
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=None)
    return value


def multiset(rows: list[tuple[Any, ...]]) -> Counter[tuple[Any, ...]]:
    return Counter(tuple(_normal(v) for v in row) for row in rows)


def table_rows(adapter: Adapter, table: TableRef, columns: list[str]) -> Counter[tuple[Any, ...]]:
    query = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(table.to_table())
    return multiset(adapter.fetch(query))


def assert_models_match_their_sql(warehouse: Warehouse, project: Path) -> dict[str, int]:
    """Every model table == its SQL evaluated from scratch now, through the same adapter."""
    options = api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir)
    prepared = api.prepare(options)
    adapter = prepared.adapter
    sizes = {}
    try:
        for ref, item in prepared.inputs.compiled.items():
            physical = prepared.session.physical_of[ref]
            columns = list(adapter.columns(physical) or {})
            assert columns, f"{ref} missing on {warehouse.kind}"
            query = exp.select(*[exp.column(c, quoted=True) for c in columns]).from_(item.physical_sql.subquery("m"))
            expected = multiset(adapter.fetch(query))
            built = table_rows(adapter, physical, columns)
            assert built == expected, f"{ref} on {warehouse.kind}: built {built} != from scratch {expected}"
            sizes[str(ref)] = sum(built.values())
    finally:
        adapter.close()
    return sizes


def build(warehouse: Warehouse, project: Path, **options: Any) -> dict[str, dict[str, Any]]:
    result = api.build(api.Options(project_dir=project, profiles_dir=warehouse.profiles_dir, threads=2, **options))
    by_model = {r.model: r for r in result.results}
    failed = {name: r.error for name, r in by_model.items() if r.status != "success"}
    assert not failed, f"build failed on {warehouse.kind}: {failed}"
    return {
        name: {"action": r.action, "reason": r.reason, "rows": r.rows, "strategy": r.strategy}
        for name, r in by_model.items()
    }


def run_sqlorch(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """The CLI in another process (so state is read back by a second connection)."""
    return subprocess.run(
        [sys.executable, "-m", "sqlorch.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )


# --------------------------------------------------------------------------------------------
# the adapter interface itself
# --------------------------------------------------------------------------------------------

ITEMS = TableRef("raw", "items")
ITEM_COLUMNS = {"id": "BIGINT", "name": "VARCHAR", "price": "DECIMAL(12, 2)", "day": "DATE"}
ITEM_ROWS = [
    (1, "a", Decimal("1.50"), dt.date(2024, 1, 1)),
    (2, "b", None, dt.date(2024, 1, 2)),
    (3, None, Decimal("3.25"), None),
]


def create_table(adapter: Adapter, table: TableRef, columns: dict[str, str]) -> None:
    adapter.ensure_schema(table.schema)
    schema = exp.Schema(
        this=table.to_table(),
        expressions=[
            exp.ColumnDef(this=exp.to_identifier(name, quoted=True), kind=exp.DataType.build(kind))
            for name, kind in columns.items()
        ],
    )
    adapter.execute(exp.Create(this=schema, kind="TABLE"))


def test_connect_introspect_insert_fingerprint(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    assert adapter.dialect == ("duckdb" if warehouse.kind == "duckdb" else warehouse.kind)
    assert adapter.columns(ITEMS) is None
    assert adapter.fingerprint(ITEMS) is None
    create_table(adapter, ITEMS, ITEM_COLUMNS)
    adapter.ensure_schema("raw")  # idempotent
    columns = adapter.columns(ITEMS)
    assert columns is not None and list(columns) == ["id", "name", "price", "day"]
    assert columns["id"].is_type(*exp.DataType.INTEGER_TYPES, exp.DataType.Type.DECIMAL)
    assert columns["name"].is_type(*exp.DataType.TEXT_TYPES)
    assert columns["day"].is_type(exp.DataType.Type.DATE)
    empty = adapter.fingerprint(ITEMS)
    adapter.insert_rows(ITEMS, list(ITEM_COLUMNS), ITEM_ROWS)
    assert table_rows(adapter, ITEMS, list(ITEM_COLUMNS)) == multiset(ITEM_ROWS)
    full = adapter.fingerprint(ITEMS)
    assert full != empty and full is not None
    assert adapter.fingerprint(ITEMS) == full  # stable
    assert adapter.fingerprint(ITEMS, ["id", "name"]) is not None
    # same multiset in another order: same fingerprint; one value changed: different
    copy = TableRef("raw", "items_copy")
    create_table(adapter, copy, ITEM_COLUMNS)
    adapter.insert_rows(copy, list(ITEM_COLUMNS), list(reversed(ITEM_ROWS)))
    assert adapter.fingerprint(copy) == full
    adapter.execute(
        exp.update(copy.to_table(), {"name": exp.Literal.string("z")}, where=exp.column("id", quoted=True).eq(1))
    )
    assert adapter.fingerprint(copy) != full
    # a duplicated row changes the fingerprint (it is a multiset fingerprint)
    adapter.insert_rows(copy, list(ITEM_COLUMNS), [ITEM_ROWS[1]])
    assert adapter.fingerprint(copy).split(":")[0] == "4"  # type: ignore[union-attr]
    forked = adapter.fork()
    warehouse.adapters.append(forked)
    assert forked.fetch(exp.select(exp.func("count", exp.Star())).from_(ITEMS.to_table()))[0][0] == 3


def test_columns_of_many_tables_in_one_call(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    other = TableRef("raw", "items_other")
    create_table(adapter, ITEMS, ITEM_COLUMNS)
    create_table(adapter, other, {"k": "BIGINT"})
    missing, missing_schema = TableRef("raw", "nothing"), TableRef("nowhere", "items")
    found = adapter.columns_many([ITEMS, missing, other, missing_schema])
    assert set(found) == {ITEMS, other}
    assert found[ITEMS] == adapter.columns(ITEMS)
    assert list(found[ITEMS]) == list(ITEM_COLUMNS) and list(found[other]) == ["k"]
    assert adapter.columns_many([]) == {}


def test_transaction_commits_and_rolls_back(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    create_table(adapter, ITEMS, ITEM_COLUMNS)
    with adapter.transaction():
        adapter.insert_rows(ITEMS, list(ITEM_COLUMNS), ITEM_ROWS[:1])
        adapter.execute(exp.insert(exp.values([(2, "b", 2, None)]), ITEMS.to_table(), columns=list(ITEM_COLUMNS)))
    count = exp.select(exp.func("count", exp.Star())).from_(ITEMS.to_table())
    assert adapter.fetch(count)[0][0] == 2
    if not adapter.capabilities.transactions:
        return
    with pytest.raises(RuntimeError):
        with adapter.transaction():
            adapter.execute(exp.delete(ITEMS.to_table(), where=exp.true()))
            raise RuntimeError("boom")
    assert adapter.fetch(count)[0][0] == 2
    # a failing statement is an AdapterError (no driver exception escapes), and rolls back
    with pytest.raises(AdapterError):
        with adapter.transaction():
            adapter.execute(exp.delete(ITEMS.to_table(), where=exp.true()))
            adapter.execute(exp.select("*").from_(TableRef("raw", "no_such_table").to_table()))
    assert adapter.fetch(count)[0][0] == 2


def test_driver_errors_become_adapter_errors(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    with pytest.raises(AdapterError):
        adapter.fetch(exp.select("*").from_(TableRef("raw", "no_such_table").to_table()))
    # the connection is still usable afterwards
    assert adapter.fetch(exp.select(exp.Literal.number(1)))[0][0] == 1


# --------------------------------------------------------------------------------------------
# builds
# --------------------------------------------------------------------------------------------


def test_demo_project_builds_and_matches_its_sql(warehouse: Warehouse, tmp_path: Path) -> None:
    project = tmp_path / "demo"
    shutil.copytree(REPO / "models", project / "models")
    shutil.copytree(REPO / "seeds", project / "seeds")
    warehouse.write_profiles()
    first = build(warehouse, project)
    assert {r["action"] for r in first.values()} == {"full"}
    sizes = assert_models_match_their_sql(warehouse, project)
    assert sizes["marts.daily_revenue"] > 0
    # seeds were loaded with their rows
    adapter = warehouse.connect()
    assert (
        adapter.fetch(exp.select(exp.func("count", exp.Star())).from_(TableRef("seeds", "orders").to_table()))[0][0]
        == 10
    )
    second = build(warehouse, project)
    assert {r["action"] for r in second.values()} == {"skip"}
    # a changed seed: an incremental run that still matches
    orders = project / "seeds" / "orders.csv"
    orders.write_text(
        orders.read_text().replace("1002,2,2024-03-01,completed,80.00", "1002,2,2024-03-01,returned,81.00")
    )
    build(warehouse, project)
    assert_models_match_their_sql(warehouse, project)
    # a full refresh replaces tables that a view reads (Postgres: DROP ... CASCADE drops the
    # view, which the same build re-creates)
    refreshed = build(warehouse, project, full_refresh=True)
    assert {r["action"] for r in refreshed.values()} == {"full"}
    assert_models_match_their_sql(warehouse, project)


SOURCES_YAML = """
sources:
  raw.orders: {cursor: loaded_at, append_only: true}
  raw.customers: {unique_key: customer_id}
"""

PROJECT = {
    "models/sources.yml": SOURCES_YAML,
    "models/staging/orders.sql": """
        SELECT order_id, customer_id, amount, loaded_at FROM raw.orders WHERE amount >= 0
    """,
    "models/marts/by_customer.sql": """
        SELECT customer_id, count(*) AS orders, sum(amount) AS total
        FROM staging.orders GROUP BY customer_id
    """,
    "models/marts/enriched.sql": """
        SELECT o.order_id, o.amount, c.name, c.country
        FROM staging.orders AS o LEFT JOIN raw.customers AS c ON o.customer_id = c.customer_id
    """,
    "models/marts/by_country.sql": """
        SELECT c.country, count(*) AS orders, sum(o.amount) AS revenue
        FROM staging.orders AS o JOIN raw.customers AS c ON o.customer_id = c.customer_id
        GROUP BY c.country
    """,
    "models/marts/country_stats.sql": """
        SELECT c.country, count(*) AS orders, sum(o.amount) FILTER (WHERE o.amount > 10) AS big,
               min(o.amount) AS smallest, max(o.order_id) AS last_order
        FROM staging.orders AS o JOIN raw.customers AS c ON o.customer_id = c.customer_id
        GROUP BY c.country
        HAVING count(*) > 1
    """,
    "models/marts/country_buyers.sql": """
        SELECT length(c.country) AS code_length, count(DISTINCT c.country) AS countries,
               count(DISTINCT o.customer_id) AS buyers, count(DISTINCT o.amount) AS amounts,
               count(DISTINCT o.amount) FILTER (WHERE o.amount > 10) AS big_amounts, count(*) AS orders
        FROM staging.orders AS o JOIN raw.customers AS c ON o.customer_id = c.customer_id
        GROUP BY length(c.country)
    """,
    "models/marts/ordering_countries.sql": """
        SELECT c.country, count(*) AS customers
        FROM raw.customers AS c
        WHERE EXISTS (SELECT 1 FROM staging.orders AS o WHERE o.customer_id = c.customer_id AND o.amount > 10)
          AND c.customer_id IN (
            SELECT o2.customer_id FROM staging.orders AS o2 GROUP BY o2.customer_id HAVING sum(o2.amount) > 100
          )
        GROUP BY c.country
    """,
    # read through one key, with no decorrelated form: folded per touched partition (analysis/partition.py)
    "models/marts/quiet_customers.sql": """
        SELECT c.country, count(*) AS customers
        FROM raw.customers AS c
        WHERE NOT EXISTS (SELECT 1 FROM staging.orders AS o WHERE o.customer_id = c.customer_id AND o.amount > 50)
        GROUP BY c.country
    """,
    "models/marts/order_count_spread.sql": """
        SELECT t.orders, count(*) AS customers
        FROM (
            SELECT c.customer_id, count(o.order_id) AS orders
            FROM raw.customers AS c LEFT JOIN staging.orders AS o ON o.customer_id = c.customer_id
            GROUP BY c.customer_id
        ) AS t
        GROUP BY t.orders
    """,
    "models/marts/cheap_orders.sql": """
        SELECT o.customer_id, count(*) AS orders, sum(o.amount) AS total
        FROM staging.orders AS o
        WHERE o.amount < (SELECT avg(x.amount) FROM staging.orders AS x WHERE x.customer_id = o.customer_id)
          AND EXISTS (
            SELECT 1 FROM staging.orders AS y WHERE y.customer_id = o.customer_id AND y.order_id <> o.order_id
          )
        GROUP BY o.customer_id
    """,
    "models/marts/steady_customers.sql": """
        SELECT c.customer_id, c.name
        FROM raw.customers AS c
        WHERE c.customer_id IN (
            SELECT o.customer_id FROM staging.orders AS o
            WHERE o.amount * 3 > (
                SELECT sum(x.amount) FROM staging.orders AS x
                WHERE x.customer_id = o.customer_id AND x.order_id <> o.order_id
            )
        )
    """,
    "models/marts/big_customers.sql": """
        -- materialized: table
        SELECT customer_id, total FROM marts.by_customer WHERE total > 100
    """,
}

ORDERS = TableRef("raw", "orders")
CUSTOMERS = TableRef("raw", "customers")
ORDER_COLUMNS = {"order_id": "BIGINT", "customer_id": "BIGINT", "amount": "DECIMAL(12, 2)", "loaded_at": "TIMESTAMP"}
CUSTOMER_COLUMNS = {"customer_id": "BIGINT", "name": "VARCHAR", "country": "VARCHAR"}
T0 = dt.datetime(2024, 1, 1, 12, 0, 0)


def _orders(start: int, count: int, minute: int) -> list[tuple[Any, ...]]:
    return [
        (i, (i % 5) + 1 if i % 7 else None, Decimal(i * 13 % 97) + Decimal("0.25"), T0 + dt.timedelta(minutes=minute))
        for i in range(start, start + count)
    ]


def test_incremental_builds_match_from_scratch(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "incremental", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, ORDERS, ORDER_COLUMNS)
    create_table(adapter, CUSTOMERS, CUSTOMER_COLUMNS)
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(1, 30, 0))
    adapter.insert_rows(
        CUSTOMERS, list(CUSTOMER_COLUMNS), [(1, "Ada", "UK"), (2, "Grace", "US"), (3, "Linus", "FI"), (4, "M", None)]
    )
    first = build(warehouse, project)
    assert all(r["action"] == "full" for r in first.values()), first
    assert_models_match_their_sql(warehouse, project)

    # appends only
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(31, 5, 1))
    appended = build(warehouse, project)
    assert appended["staging.orders"]["action"] == "incremental", appended
    assert appended["marts.by_customer"]["action"] == "incremental", appended
    assert_models_match_their_sql(warehouse, project)

    # updates, deletes and inserts on a keyed source; a late row on the append-only one
    adapter.execute(
        exp.update(
            CUSTOMERS.to_table(),
            {"country": exp.Literal.string("DE")},
            where=exp.column("customer_id", quoted=True).eq(1),
        )
    )
    adapter.execute(exp.delete(CUSTOMERS.to_table(), where=exp.column("customer_id", quoted=True).eq(3)))
    adapter.insert_rows(CUSTOMERS, list(CUSTOMER_COLUMNS), [(5, "Edsger", "NL")])
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(36, 3, 2))
    changed = build(warehouse, project)
    assert changed["marts.enriched"]["action"] in ("incremental", "full"), changed
    # both sides of the join changed (updates, a delete, appends): groups folded from signed
    # deltas where the state can commit with the model (not BigQuery: no transactions here)
    signed = "fold signed deltas" if adapter.capabilities.transactions else "merge keys"
    assert changed["marts.country_stats"]["strategy"] == signed, changed
    # COUNT/SUM(DISTINCT) through the (group, value) multiplicities kept beside the groups
    assert changed["marts.country_buyers"]["strategy"] == signed, changed
    # EXISTS and IN decorrelated into joins with derived tables of groups (analysis/decorrelate.py)
    assert changed["marts.ordering_countries"]["strategy"] == signed, changed
    # NOT EXISTS, a LEFT JOIN counted in a derived table, AVG of DECIMAL and <> correlations:
    # per touched partition, or rebuilt where no transaction commits the state with the model
    partitioned = "fold signed deltas" if adapter.capabilities.transactions else "rebuild"
    for model in ("marts.quiet_customers", "marts.order_count_spread", "marts.cheap_orders"):
        assert changed[model]["strategy"] == partitioned, (model, changed[model])
    # a row-level model (TPC-H Q20's shape): its keys from the touched partitions' rows now and
    # before, replaced as keys are (idempotent: BigQuery too, without transactions)
    steady = changed["marts.steady_customers"]
    assert "touched partitions' rows" in steady["reason"], steady
    assert_models_match_their_sql(warehouse, project)

    # nothing changed: everything skips, also as seen by another process
    skipped = build(warehouse, project)
    assert {r["action"] for r in skipped.values()} == {"skip"}, skipped
    warehouse.close_all()
    run = run_sqlorch("plan", "--json", "--project-dir", project, "--profiles-dir", warehouse.profiles_dir)
    assert run.returncode == 0, run.stderr + run.stdout
    steps = json.loads(run.stdout)["steps"]
    assert steps and {s["action"] for s in steps} == {"skip"}, steps

    # --full-refresh rebuilds and still matches
    refreshed = build(warehouse, project, full_refresh=True)
    assert {r["action"] for r in refreshed.values()} == {"full"}
    assert_models_match_their_sql(warehouse, project)


# --------------------------------------------------------------------------------------------
# errors: bad credentials, unreachable host, no secret in any message
# --------------------------------------------------------------------------------------------

SECRET = "s3cr3t-Pa55word-do-not-print"


def _require_password(warehouse: Warehouse) -> dict[str, Any]:
    """Postgres stand-in quirk: it runs with trust auth (any password is accepted). Make a role
    that needs a password and switch pg_hba.conf to scram for every user but the superuser."""
    import psycopg

    admin_params = {k: warehouse.settings[k] for k in ("host", "port", "user", "dbname")}
    with psycopg.connect(**admin_params, autocommit=True) as admin:
        admin.execute("CREATE ROLE app_user LOGIN PASSWORD 'right-password'")
        hba = admin.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
        # one rule per row: COPY's text format would escape a newline inside a value
        rules = "ARRAY['host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256']"
        admin.execute(f"COPY (SELECT unnest({rules})) TO {psycopg.sql.quote(hba)}")
        admin.execute("SELECT pg_reload_conf()")
    return {"user": "app_user", "password": SECRET}


def test_bad_credentials_give_a_clear_error_without_the_secret(networked_warehouse: Warehouse, tmp_path: Path) -> None:
    warehouse = networked_warehouse
    if warehouse.kind == "bigquery":
        # bqemulator takes any (anonymous) credentials: a keyfile that does not exist it is
        with pytest.raises(AdapterError) as caught:
            warehouse.connect(keyfile=str(tmp_path / "missing-key.json"), api_endpoint=None)
        assert "missing-key.json" in str(caught.value)
        return
    if warehouse.kind == "snowflake":
        # fakesnow accepts any account/user/password: an unreadable private key it is
        with pytest.raises(AdapterError) as caught:
            warehouse.connect(password=SECRET, private_key_file=str(tmp_path / "missing.p8"), login_timeout=5)
        assert SECRET not in str(caught.value)
        assert "127.0.0.1" in str(caught.value)
        return
    overrides = _require_password(warehouse)
    with pytest.raises(AdapterError) as caught:
        warehouse.connect(**overrides)
    message = str(caught.value)
    assert SECRET not in message
    assert "password authentication failed" in message
    assert str(warehouse.settings["host"]) in message
    # and through the CLI: exit 1, no traceback, no secret
    project = write_files(tmp_path / "p", {"models/m.sql": "SELECT 1 AS x"})
    warehouse.write_profiles(tmp_path / "bad", **overrides)
    run = run_sqlorch("build", "--project-dir", project, "--profiles-dir", tmp_path / "bad")
    output = run.stdout + run.stderr
    assert run.returncode == 1, output
    assert "Traceback" not in output
    assert SECRET not in output
    assert "error:" in output and "127.0.0.1" in output


def test_unreachable_host_gives_a_clear_error_without_the_secret(networked_warehouse: Warehouse) -> None:
    warehouse = networked_warehouse
    # 127.0.0.1 port 9: nothing listens there, so the connection is refused at once
    if warehouse.kind == "postgres":
        overrides: dict[str, Any] = {"host": "127.0.0.1", "port": 9, "password": SECRET}
        where = "127.0.0.1"
    elif warehouse.kind == "snowflake":
        overrides = {"host": "127.0.0.1", "port": 9, "password": SECRET, "login_timeout": 5, "network_timeout": 5}
        where = "127.0.0.1:9"
    else:
        overrides = {"api_endpoint": "http://127.0.0.1:9", "timeout": 3}
        where = "127.0.0.1:9"
    with pytest.raises(AdapterError) as caught:
        adapter = warehouse.connect(**overrides)
        adapter.fetch(exp.select(exp.Literal.number(1)))  # BigQuery connects lazily
    message = str(caught.value)
    assert where in message, message
    assert SECRET not in message


# --------------------------------------------------------------------------------------------
# compile: target dialect SQL without any connection
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["postgres", "snowflake", "bigquery"])
def test_compile_for_a_target_needs_no_connection(kind: str, tmp_path: Path) -> None:
    project = tmp_path / "demo"
    shutil.copytree(REPO / "models", project / "models")
    shutil.copytree(REPO / "seeds", project / "seeds")
    all_settings: dict[str, dict[str, Any]] = {
        "postgres": {"host": "127.0.0.1", "port": 9, "dbname": "x", "user": "u", "password": SECRET},
        "snowflake": {"account": "acme", "user": "u", "password": SECRET, "database": "analytics"},
        "bigquery": {"project": "my-project", "keyfile": str(tmp_path / "missing.json")},
    }
    settings = all_settings[kind]
    (project / "profiles.yml").write_text(
        textwrap.dedent(
            f"""
            target: dev
            targets:
              dev: {{type: duckdb}}
              {kind}: {json.dumps({"type": kind, **settings})}
            """
        )
    )
    run = run_sqlorch("compile", "--project-dir", project, "--target", kind)
    assert run.returncode == 0, run.stdout + run.stderr
    compiled = sorted((project / "target" / "compiled").rglob("*.sql"))
    assert len(compiled) == 6
    for path in compiled:
        text = path.read_text()
        parsed = sqlglot.parse_one(text, read=kind)
        assert isinstance(parsed, exp.Query), path
        if kind == "bigquery":
            assert "FILTER (WHERE" not in text  # BigQuery has no aggregate FILTER
    assert SECRET not in run.stdout + run.stderr


# --------------------------------------------------------------------------------------------
# crash safety: a build killed at any point, then run again, is exact on every target
# --------------------------------------------------------------------------------------------


def _build_process(warehouse: Warehouse, project: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sqlorch.cli",
            "build",
            "--project-dir",
            str(project),
            "--profiles-dir",
            str(warehouse.profiles_dir),
            "--threads",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])},
    )


def _lock_note(warehouse: Warehouse) -> Path:
    """Written by a DuckDB build once it holds the database's lock (adapters/duckdb.py)."""
    return Path(str(warehouse.settings["path"]) + ".sqlorch-lock")


def _holds_lock(note: Path, process: subprocess.Popen[str]) -> bool:
    try:
        return bool(json.loads(note.read_text()).get("pid") == process.pid)
    except (OSError, ValueError):
        return False  # not there yet, or being written


def _wait_for(note: Path, process: subprocess.Popen[str], timeout: float = 60) -> float:
    """Seconds until the build's lock note names it (it holds the lock), or -1 when it ended first."""
    started = time.monotonic()
    while not _holds_lock(note, process):
        if process.poll() is not None or time.monotonic() - started > timeout:
            return -1.0
        time.sleep(0.005)
    return time.monotonic() - started


def test_killed_build_then_rebuild_is_exact(crashable_warehouse: Warehouse, tmp_path: Path) -> None:
    """SIGKILL part-way through builds that capture updates, deletes and appends. Where
    the target has no transactions (BigQuery here) this exercises the write order:
    batches are recorded before shadows and cursors move, leftovers are cleared.

    DuckDB: the test's own connection is closed while a build runs (it would hold the file
    lock, and every killed build would only have been waiting for it); kills are timed from
    the moment the build holds the lock, and a kill counts as mid-write when the killed
    build left committed writes in the write-ahead log (absent before it started: closing
    the last connection checkpoints). At least one kill must be mid-write."""
    warehouse = crashable_warehouse
    duck = warehouse.kind == "duckdb"
    project = write_files(tmp_path / "crash", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    create_table(adapter, ORDERS, ORDER_COLUMNS)
    create_table(adapter, CUSTOMERS, CUSTOMER_COLUMNS)
    adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(1, 30, 0))
    adapter.insert_rows(CUSTOMERS, list(CUSTOMER_COLUMNS), [(1, "Ada", "UK"), (2, "Grace", "US"), (3, "Linus", "FI")])
    warehouse.close_all()
    build(warehouse, project)
    note = _lock_note(warehouse) if duck else None
    wal = Path(str(warehouse.settings["path"]) + ".wal") if duck else None
    started = time.monotonic()
    process = _build_process(warehouse, project)
    locked_after = _wait_for(note, process) if note is not None else 0.0
    process.wait(timeout=300)
    duration = time.monotonic() - started  # a build with nothing to do: start-up and state reads
    if note is not None:
        assert locked_after >= 0, "the measured build never took the lock"
        duration -= locked_after  # the part of a build that holds the lock
    killed = mid_write = 0
    for step, fraction in enumerate((0.6, 1.2, 1.8, 0.3, 0.9, 1.5)):
        adapter = warehouse.connect()
        adapter.insert_rows(ORDERS, list(ORDER_COLUMNS), _orders(100 + 10 * step, 4, 10 + step))
        adapter.execute(
            exp.update(
                CUSTOMERS.to_table(),
                {"country": exp.Literal.string(f"C{step}")},
                where=exp.column("customer_id", quoted=True).eq(1 + step % 3),
            )
        )
        if step == 2:
            adapter.execute(exp.delete(CUSTOMERS.to_table(), where=exp.column("customer_id", quoted=True).eq(2)))
        warehouse.close_all()  # DuckDB: the build must not wait for this test's lock
        if wal is not None:
            assert not wal.exists() or wal.stat().st_size == 0, "the write-ahead log was not checkpointed"
        process = _build_process(warehouse, project)
        if note is not None and _wait_for(note, process) < 0:
            process.wait(timeout=300)
            continue  # finished before it could be killed
        time.sleep(duration * fraction)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
            process.wait(timeout=300)
            mid_write += wal is not None and wal.exists() and wal.stat().st_size > 0
        process.wait(timeout=300)
    assert killed >= 1, "no build was interrupted: the delays are too long for this machine"
    if duck:
        assert mid_write >= 1, f"none of the {killed} killed builds had committed a write: they proved nothing"
    build(warehouse, project)
    assert_models_match_their_sql(warehouse, project)
