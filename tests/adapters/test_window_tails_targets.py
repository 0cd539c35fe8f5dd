"""``extend windows at partition ends`` (planning/rewrites/window_tails.py) on the DuckDB file
and the Postgres and Snowflake stand-ins (BigQuery, without transactions, replaces the keys):
a sessions model (lag, a running SUM, a GROUP BY of the user and session) follows appends at
partition ends beside a late row, then a delete, an update moving a row to another user and a
NULL user; after every build it equals its SQL evaluated from scratch, value for value. Few
steps: tests/test_window_tails.py walks the long histories on DuckDB."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import sqlglot
from sqlglot import exp

from sqlorch.planning.steps import WINDOW_TAILS
from sqlorch.refs import TableRef
from tests.adapters.conftest import Warehouse
from tests.adapters.test_conformance import build, create_table
from tests.adapters.test_kept_groups import _changed, _transactions
from tests.conftest import write_files

SESSIONS = (
    "WITH ordered AS (SELECT user_id, event_id, ts, amount, "
    "lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts FROM raw.events), "
    "numbered AS (SELECT user_id, ts, amount, "
    "CAST(SUM(CASE WHEN prev_ts IS NULL OR ts - prev_ts > 30 THEN 1 ELSE 0 END) "
    "OVER (PARTITION BY user_id ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS BIGINT) "
    "AS session_number FROM ordered) "
    "SELECT user_id, session_number, MIN(ts) AS session_start, MAX(ts) AS session_end, COUNT(*) AS events, "
    "SUM(amount) AS revenue FROM numbered GROUP BY user_id, session_number"
)
PROJECT = {
    "models/sources.yml": "sources:\n  raw.events: {unique_key: event_id}\n",
    "models/mart/sessions.sql": "-- materialized: incremental\n" + SESSIONS,
}
EVENTS = TableRef("raw", "events")


def _exact(warehouse: Warehouse) -> None:
    adapter = warehouse.connect()
    try:
        fresh = adapter.fetch(sqlglot.parse_one(SESSIONS, read=adapter.dialect))  # type: ignore[arg-type]
        stored = adapter.fetch(exp.select("*").from_("mart.sessions"))
        assert Counter(stored) == Counter(fresh)
    finally:
        warehouse.close_all()


def test_sessions_extend_their_tails(warehouse: Warehouse, tmp_path: Path) -> None:
    project = write_files(tmp_path / "project", PROJECT)
    warehouse.write_profiles()
    adapter = warehouse.connect()
    columns = {"event_id": "INTEGER", "user_id": "INTEGER", "ts": "INTEGER", "amount": "DECIMAL(12,2)"}
    create_table(adapter, EVENTS, columns)
    adapter.insert_rows(EVENTS, list(columns), [(i, i % 4, i * 13, 0.25 * i) for i in range(1, 25)])
    warehouse.close_all()
    assert build(warehouse, project, rebuild_when_cheaper=False)["mart.sessions"]["action"] == "full"
    _exact(warehouse)
    expected = WINDOW_TAILS if _transactions(warehouse) else "delete+insert keys"
    steps = [
        # appends at the ends of users 1 and 2, a new user, a late row of user 3
        ("INSERT INTO raw.events VALUES (30, 1, 400, 1.00), (31, 2, 500, 2.00), (32, 7, 10, 1.50), (33, 3, 5, 1.00)",),
        # a delete, a row moving to user 7's end, a NULL user, an append to user 1
        (
            "DELETE FROM raw.events WHERE event_id = 6",
            "UPDATE raw.events SET user_id = 7, ts = 900 WHERE event_id = 9",
            "INSERT INTO raw.events VALUES (34, NULL, 50, 1.00), (35, 1, 700, 3.00)",
        ),
    ]
    for statements in steps:
        _changed(warehouse, *statements)
        assert build(warehouse, project, rebuild_when_cheaper=False)["mart.sessions"]["strategy"] == expected
        _exact(warehouse)
