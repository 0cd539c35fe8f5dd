"""The raw data of the shop fixture (tests/fixtures/dbt_shop) and the changes applied to it,
and helpers to build it with sqlorch and with dbt-duckdb and read every table back."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "dbt_shop"
STANDINS = Path(os.environ.get("SQLORCH_STANDINS_DIR") or REPO / ".standins")
DBT = STANDINS / "dbt" / "venv" / "bin" / "dbt"

CUSTOMERS = [
    (1, " Ada ", "Lovelace", "ADA@example.com", "gb", date(2023, 1, 5)),
    (2, "Alan", "Turing ", "alan@example.com", "gb", date(2023, 2, 1)),
    (3, "Grace", "Hopper", "Grace@Example.com", "us", date(2023, 2, 9)),
    (4, "Edsger", "Dijkstra", "edsger@example.com", "nl", date(2023, 3, 3)),
    (5, "Emmy", "Noether", "emmy@example.com", "de", date(2023, 3, 20)),
    (6, "Marie", "Curie", "marie@example.com", "fr", date(2023, 4, 2)),
    (7, "Kurt", "Gödel", "kurt@example.com", "de", date(2023, 5, 11)),
    (8, "Barbara", "Liskov", "barbara@example.com", "us", date(2023, 6, 30)),
]
# customers from GB: the country seed has no GB row, so relationships would fail: use real codes
CUSTOMERS = [(*c[:4], {"gb": "nl"}.get(c[4], c[4]), c[5]) for c in CUSTOMERS]

STATUSES = ["placed", "shipped", "completed", "returned"]
ORDERS = [
    (100 + i, 1 + (i * 3) % 8, date(2024, 1, 1 + i // 3), STATUSES[i % 4].upper() if i % 5 == 0 else STATUSES[i % 4],
     datetime(2024, 1, 1 + i // 3, 12))
    for i in range(16)
]  # fmt: skip
METHODS = ["card", "voucher", "transfer"]
PAYMENTS = [
    (1000 + i, 100 + i % 16, METHODS[i % 3].upper() if i % 4 == 0 else METHODS[i % 3], 500 + 137 * i,
     datetime(2024, 1, 1 + (i % 16) // 3, 13))
    for i in range(22)
]  # fmt: skip
EVENT_TYPES = ["view", "cart", "purchase"]
EVENTS = [
    (5000 + i, 1 + i % 8, EVENT_TYPES[i % 3], datetime(2024, 1, 1 + i // 5, i % 24), datetime(2024, 1, 1 + i // 5, 23))
    for i in range(25)
]

# The changes of step two: appends (with late rows), updates and deletes.
LATE_ORDER = (200, 4, date(2024, 1, 2), "completed", datetime(2024, 1, 9, 8))  # an old order_date, loaded late
NEW_ORDERS = [LATE_ORDER, (201, 6, date(2024, 1, 8), "placed", datetime(2024, 1, 9, 8))]
NEW_PAYMENTS = [
    (2000, 200, "card", 4200, datetime(2024, 1, 9, 9)),
    (2001, 201, "voucher", 1500, datetime(2024, 1, 9, 9)),
]
REFUNDED_PAYMENT = 1001  # an old order's payment, corrected: its day's revenue changes
DELETED_PAYMENT = 1005
LATE_EVENT = (6000, 3, "purchase", datetime(2024, 1, 2, 6), datetime(2024, 1, 9, 10))  # occurred long before the newest
NEW_EVENTS = [LATE_EVENT, (6001, 2, "view", datetime(2024, 1, 9, 9), datetime(2024, 1, 9, 10))]
DELETED_EVENT = 5003


def create_raw(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute("create schema raw")
        con.execute(
            "create table raw.customers (customer_id int, first_name varchar, last_name varchar, email varchar, "
            "country varchar, created_at date)"
        )
        con.execute(
            "create table raw.orders_v2 (order_id int, customer_id int, order_date date, status varchar, "
            "loaded_at timestamp)"
        )
        con.execute(
            "create table raw.payments (payment_id int, order_id int, method varchar, amount_cents int, "
            "paid_at timestamp)"
        )
        con.execute(
            "create table raw.events (event_id int, customer_id int, event_type varchar, occurred_at timestamp, "
            "loaded_at timestamp)"
        )
        con.executemany("insert into raw.customers values (?, ?, ?, ?, ?, ?)", CUSTOMERS)
        con.executemany("insert into raw.orders_v2 values (?, ?, ?, ?, ?)", ORDERS)
        con.executemany("insert into raw.payments values (?, ?, ?, ?, ?)", PAYMENTS)
        con.executemany("insert into raw.events values (?, ?, ?, ?, ?)", EVENTS)


def change_raw(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        con.executemany("insert into raw.orders_v2 values (?, ?, ?, ?, ?)", NEW_ORDERS)
        con.executemany("insert into raw.payments values (?, ?, ?, ?, ?)", NEW_PAYMENTS)
        con.execute("update raw.payments set amount_cents = 1 where payment_id = ?", [REFUNDED_PAYMENT])
        con.execute("delete from raw.payments where payment_id = ?", [DELETED_PAYMENT])
        con.executemany("insert into raw.events values (?, ?, ?, ?, ?)", NEW_EVENTS)
        con.execute("delete from raw.events where event_id = ?", [DELETED_EVENT])
        con.execute("update raw.customers set email = 'ada@lovelace.org', country = 'fr' where customer_id = 1")
        con.execute("update raw.orders_v2 set status = 'shipped' where order_id = 101")


def copy_project(root: Path, database: Path) -> Path:
    """The fixture in ``root``, its profile pointing at ``database``."""
    shutil.copytree(FIXTURE, root)
    profile = (root / "profiles.yml").read_text()
    (root / "profiles.yml").write_text(
        profile.replace("{{ env_var('SHOP_DUCKDB_PATH', 'shop.duckdb') }}", str(database))
    )
    return root


def run_dbt(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}
    return subprocess.run(
        [str(DBT), *args, "--project-dir", str(root), "--profiles-dir", str(root)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _normal(value: Any) -> Any:
    if isinstance(value, float | Decimal):
        return round(float(value), 6)
    return value


def tables(path: Path, skip_schemas: tuple[str, ...] = ("raw", "_sqlorch")) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every table and view outside ``skip_schemas``, as a multiset of rows with columns
    in name order (so column order does not count, values do)."""
    out: dict[str, Counter[tuple[Any, ...]]] = {}
    with duckdb.connect(str(path), read_only=True) as con:
        relations = con.execute(
            "select table_schema, table_name from information_schema.tables where table_catalog = current_database()"
        ).fetchall()
        for schema, name in relations:
            if schema in skip_schemas:
                continue
            columns = sorted(
                (
                    row[0]
                    for row in con.execute(
                        "select column_name from information_schema.columns where table_schema = ? and table_name = ? "
                        "and table_catalog = current_database()",
                        [schema, name],
                    ).fetchall()
                ),
                key=str.lower,
            )
            select = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'select {select} from "{schema}"."{name}"').fetchall()
            out[f"{schema}.{name}"] = Counter(tuple(_normal(v) for v in row) for row in rows)
    return out
