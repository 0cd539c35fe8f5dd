"""``extend windows at partition ends`` (planning/rewrites/window_tails.py) on a DuckDB file:
window chains under a GROUP BY keyed by their partition (the events benchmark's sessions, a
row_number chain renaming its partition column, a chain ordered by a key with ties) follow
appends at partition ends, late rows, deletes, updates, rows moving partitions, NULL partition
and order keys, ties, a new partition, a partition emptied, a ``--full-refresh`` and tails
rebuilt after their record went missing. After every build each model equals its SQL evaluated
from scratch, exactly, the strategy that ran is the window tails', and the sessions' tails
equal their last rows and session counts evaluated from scratch."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlglot import exp

from sqlorch import api
from sqlorch.analysis.window_tails import NotTailed, window_tails
from sqlorch.planning.steps import WINDOW_TAILS, Statement
from tests.conftest import write_files

SESSIONS = """
WITH ordered AS (
    SELECT user_id, event_id, ts, amount,
        lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts
    FROM raw.events
),
numbered AS (
    SELECT user_id, ts, amount,
        CAST(sum(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL 30 MINUTE THEN 1 ELSE 0 END)
                OVER (PARTITION BY user_id ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            AS BIGINT) AS session_number
    FROM ordered
)
SELECT user_id, session_number, min(ts) AS session_start, max(ts) AS session_end,
       count(*) AS events, sum(amount) AS revenue
FROM numbered GROUP BY user_id, session_number
"""
# row_number and a running COUNT(x) of a column with NULLs, two levels, the partition renamed
BLOCKS = """
WITH w AS (
    SELECT user_id, ts, amount,
        row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS rn,
        count(amount) OVER (PARTITION BY user_id ORDER BY ts, event_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
            AS seen
    FROM raw.events
),
b AS (SELECT user_id, ts, amount, seen, rn % 3 AS block FROM w)
SELECT user_id AS uid, block, count(*) AS n, max(seen) AS most_seen, min(ts) AS first_ts, sum(amount) AS total,
       count(amount) AS priced
FROM b GROUP BY user_id, block
"""
# ordered by ts alone: ties; the default RANGE frame gives peers one value, so the result
# does not depend on the order the engine puts tied rows in
GAPS = """
SELECT user_id, gaps, count(*) AS n, max(ts) AS last_ts, sum(amount) AS total
FROM (
    SELECT user_id, ts, amount,
        CAST(sum(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL 1 HOUR THEN 1 ELSE 0 END)
            OVER (PARTITION BY user_id ORDER BY ts) AS BIGINT) AS gaps
    FROM (SELECT user_id, ts, amount, lag(ts) OVER (PARTITION BY user_id ORDER BY ts) AS prev_ts FROM raw.events) AS o
) AS g
GROUP BY user_id, gaps
"""
MODELS = {"mart.sessions": SESSIONS, "mart.blocks": BLOCKS, "mart.gaps": GAPS}
HEADER = "-- materialized: incremental\n"


def _project(tmp_path: Path) -> Path:
    files = {"models/sources.yml": "sources:\n  raw.events: {unique_key: event_id}\n"}
    files |= {f"models/{name.replace('.', '/')}.sql": HEADER + sql for name, sql in MODELS.items()}
    return write_files(tmp_path / "project", files)


def _sql(path: Path, *statements: str) -> None:
    """Run ``statements`` (``T '...'``: a timestamp literal, to keep the histories short)."""
    with duckdb.connect(str(path)) as connection:
        for statement in statements:
            connection.execute(statement.replace("T '", "TIMESTAMP '"))


def _fetch(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def _build(project: Path, **options: Any) -> dict[str, str]:
    result = api.build(api.Options(project_dir=project, threads=1, rebuild_when_cheaper=False, **options))
    failed = {r.model: r.error for r in result.results if r.status != "success"}
    assert not failed, failed
    return {r.model: r.strategy for r in result.results}


def _exact(path: Path) -> None:
    """Each model equals its SQL evaluated now, value for value; the sessions' tails are each
    user's last event and session count evaluated from scratch."""
    for name, sql in MODELS.items():
        assert Counter(_fetch(path, f"SELECT * FROM {name}")) == Counter(_fetch(path, sql)), name
    expected = _fetch(
        path,
        f"""SELECT e.user_id, e.ts, e.event_id, s.n FROM (
            SELECT user_id, ts, event_id, row_number() OVER (PARTITION BY user_id ORDER BY ts, event_id) AS rn,
                count(*) OVER (PARTITION BY user_id) AS total FROM raw.events) AS e
        JOIN (SELECT user_id, max(session_number) AS n FROM ({SESSIONS}) GROUP BY user_id) AS s
            ON e.user_id IS NOT DISTINCT FROM s.user_id
        WHERE e.rn = e.total""",
    )
    kept = _fetch(path, 'SELECT user_id, ts, event_id, "_sqlorch_s0" FROM _sqlorch.tails__mart__sessions')
    assert Counter(kept) == Counter(expected)


def _tailed(strategies: dict[str, str]) -> None:
    assert {name: strategies[name] for name in MODELS} == dict.fromkeys(MODELS, WINDOW_TAILS), strategies


EVENTS = (
    "INSERT INTO raw.events SELECT i, i % 5, TIMESTAMP '2024-01-01' + to_minutes(i * 13), i * 0.25 FROM range(60) t(i)"
)


@pytest.fixture
def warehouse(tmp_path: Path) -> tuple[Path, Path]:
    project = _project(tmp_path)
    path = project / "warehouse.duckdb"
    _sql(
        path,
        "CREATE SCHEMA raw",
        "CREATE TABLE raw.events (event_id BIGINT, user_id BIGINT, ts TIMESTAMP, amount DECIMAL(12, 2))",
        EVENTS,
        "UPDATE raw.events SET amount = NULL WHERE event_id % 7 = 0",
    )
    strategies = _build(project)
    assert set(strategies.values()) == {"rebuild"}
    _exact(path)
    return project, path


STEPS = [
    # appends at the ends of every partition, one past a gap, a new partition (user 9)
    (
        "INSERT INTO raw.events SELECT i, i % 5, T '2024-01-01' + to_minutes(i * 13), 1.50 FROM range(60, 70) t(i)",
        "INSERT INTO raw.events VALUES (100, 2, T '2024-01-05', 2.00), (101, 9, T '2024-01-02', NULL)",
    ),
    # a late row (user 3, before its tail) beside appends of other users
    (
        "INSERT INTO raw.events VALUES (102, 3, T '2024-01-01 00:20:00', 3.00)",
        "INSERT INTO raw.events VALUES (103, 1, T '2024-01-06', 1.00), (104, 1, T '2024-01-06 00:10', 1.00)",
    ),
    # a delete, an update of a value, a row moving to another partition (at its end)
    (
        "DELETE FROM raw.events WHERE event_id = 12",
        "UPDATE raw.events SET amount = 7.25 WHERE event_id = 33",
        "UPDATE raw.events SET user_id = 9, ts = T '2024-01-07' WHERE event_id = 41",
    ),
    # NULL partition keys, a NULL order key (user 4: its tail becomes the NULL-ts row)
    (
        "INSERT INTO raw.events VALUES (105, NULL, T '2024-01-02', 1.00), (106, NULL, T '2024-01-03', 2.00)",
        "INSERT INTO raw.events VALUES (107, 4, NULL, 1.00)",
    ),
    # appends after a NULL-ts tail (user 4) and to the NULL partition; more to user 9
    (
        "INSERT INTO raw.events VALUES (108, 4, T '2024-01-09', 1.00), (109, NULL, T '2024-01-09', 1.00)",
        "INSERT INTO raw.events VALUES (110, 9, T '2024-01-09', 1.00)",
    ),
    # ties in ts: with the tail (user 2's last ts) and among new rows (user 0)
    (
        "INSERT INTO raw.events VALUES (111, 2, T '2024-01-05', 5.00)",
        "INSERT INTO raw.events VALUES (112, 0, T '2024-01-10', 1.00), (113, 0, T '2024-01-10', 2.00)",
    ),
    # appends after ties (user 0 and 2), a partition emptied (user 3)
    (
        "INSERT INTO raw.events VALUES (114, 0, T '2024-01-11', 1.00), (115, 2, T '2024-01-11', 1.00)",
        "DELETE FROM raw.events WHERE user_id = 3",
    ),
    # the emptied partition back, an insert and delete of the same user in one change
    (
        "INSERT INTO raw.events VALUES (116, 3, T '2024-01-12', 1.00), (117, 1, T '2024-01-12', 1.00)",
        "DELETE FROM raw.events WHERE event_id = 117",
    ),
]


def test_every_kind_of_change_follows_exactly(warehouse: tuple[Path, Path]) -> None:
    project, path = warehouse
    for statements in STEPS:
        _sql(path, *statements)
        _tailed(_build(project))
        _exact(path)


def test_appended_partitions_keep_their_stored_groups(warehouse: tuple[Path, Path]) -> None:
    """An appended partition's groups before the tail are read back, not recomputed: a stored
    session tampered with stays so (a replaced partition's comes back right). The test that
    the append path ran, not the replace path for every partition."""
    project, path = warehouse
    tamper = "UPDATE mart.sessions SET events = 999 WHERE session_number = 1 AND user_id IN (1, 2)"
    _sql(
        path,
        tamper,
        "INSERT INTO raw.events VALUES (200, 1, T '2024-02-01', 1.00)",  # appended
        "INSERT INTO raw.events VALUES (201, 2, T '2023-12-01', 1.00)",  # late: replaced
    )
    _tailed(_build(project))
    assert _fetch(path, "SELECT user_id, events FROM mart.sessions WHERE events = 999") == [(1, 999)]


def test_full_refresh_and_lost_tails_rebuild_them(warehouse: tuple[Path, Path]) -> None:
    project, path = warehouse
    _sql(path, *STEPS[0])
    _tailed(_build(project))
    assert set(_build(project, full_refresh=True).values()) == {"rebuild"}
    _exact(path)
    _sql(path, *STEPS[1])
    _tailed(_build(project))
    _exact(path)
    # tails whose batch is not the model's (a crash, another strategy): wrong values, no record
    _sql(
        path,
        'UPDATE _sqlorch.tails__mart__sessions SET "_sqlorch_s0" = 999',
        "DELETE FROM _sqlorch.aggregate_states WHERE relation = 'mart.sessions tails'",
        *STEPS[2],
    )
    _tailed(_build(project))
    _exact(path)
    _sql(path, *STEPS[4])
    _tailed(_build(project))
    _exact(path)


@pytest.mark.parametrize(
    ("sql", "why"),
    [
        (SESSIONS.replace("lag(ts)", "lead(ts)"), "lead"),
        (SESSIONS.replace("lag(ts)", "lag(amount)"), "not an order column"),
        (SESSIONS.replace("lag(ts)", "lag(ts, 2)"), "more than one row"),
        (SESSIONS.replace("ORDER BY ts, event_id ROWS", "ORDER BY ts DESC, event_id ROWS"), "descending"),
        (SESSIONS.replace("THEN 1 ELSE 0 END", "THEN 1 END"), "integer literals"),
        (SESSIONS.replace("CURRENT ROW)", "1 FOLLOWING)"), "frame"),
        (SESSIONS.replace("FROM raw.events", "FROM raw.events WHERE amount > 0"), "WHERE"),
        (SESSIONS.replace("event_id, ts, amount,", "event_id, ts, weight AS amount,"), "integer or decimal"),
        (SESSIONS.replace("min(ts) AS session_start", "avg(amount) AS session_start"), "MIN/MAX/COUNT/SUM"),
        (SESSIONS.replace("GROUP BY user_id, session_number", "GROUP BY session_number, user_id"), ""),
        (
            SESSIONS.replace("(PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts", "(ORDER BY ts) AS prev_ts"),
            "PARTITION",
        ),
    ],
)
def test_shapes_not_taken_say_why(sql: str, why: str) -> None:
    import sqlglot
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.schema import MappingSchema

    from sqlorch.analysis.inline_ctes import inline_ctes

    schema = {
        "raw": {
            "events": {
                "event_id": "BIGINT",
                "user_id": "BIGINT",
                "ts": "TIMESTAMP",
                "amount": "DECIMAL(12,2)",
                "weight": "DOUBLE",
            }
        }
    }
    query = inline_ctes(qualify(sqlglot.parse_one(sql, read="duckdb"), schema=schema, dialect="duckdb"))
    if not why:  # the GROUP BY's order does not matter
        assert window_tails(query, MappingSchema(schema, dialect="duckdb")).partition == ("user_id",)
        return
    with pytest.raises(NotTailed, match=why):
        window_tails(query, MappingSchema(schema, dialect="duckdb"))


def test_tails_commit_with_the_model_and_plan_shows_them(warehouse: tuple[Path, Path]) -> None:
    """The tails move in the transaction that writes the model and its watermark (a crash
    between them cannot leave the tails ahead of the model); ``plan`` says what is kept."""
    project, path = warehouse
    users = _fetch(path, "SELECT count(DISTINCT user_id) FROM raw.events")[0][0]  # the tails now
    _sql(path, *STEPS[0])
    plan = api.plan(api.Options(project_dir=project, rebuild_when_cheaper=False))
    step = next(s for s in plan.steps if str(s.ref) == "mart.sessions")
    assert step.strategy == WINDOW_TAILS
    runs: list[list[str]] = [[]]
    for statement in step.statements:
        if isinstance(statement, Statement) and statement.transaction:
            runs[-1].append(statement.purpose)
        elif runs[-1]:
            runs.append([])
    (committed,) = [run for run in runs if any(p.startswith("apply:") for p in run)]
    # the stored groups are looked up in the transaction that deletes them by the rowid found
    # there (a rowid is stable within a transaction only): no second scan matching the groups
    purposes = ("window tails: stored groups the change touches", "window tails: delete the touched", "bookkeeping")
    for purpose in (*purposes, "window tails: insert them again"):
        assert purpose in committed, (purpose, runs)
    (delete,) = [s.sql for s in step.statements if isinstance(s, Statement) and s.purpose.startswith("apply: delete")]
    assert isinstance(delete, exp.Delete) and delete.find(exp.In) is not None, delete
    assert [c.name for c in delete.args["where"].find(exp.In).this.find_all(exp.Column)] == ["rowid"], delete
    kept = step.kept_state
    assert kept is not None and (kept.table, kept.rows, kept.current) == ("_sqlorch.tails__mart__sessions", users, True)
    assert kept.unit == "partition tail", kept  # `plan` prints "N partition tails", not groups
    assert step.to_json()["kept_state"]["unit"] == "partition tail"  # and `plan --json` says so
