"""Where the affected-key filter lands, and that the pushed-down query returns the same
rows as filtering the model's output (evaluated in DuckDB on random data)."""

from __future__ import annotations

import random

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from sqlorch.planning.rewrites.restrict_to_keys import restrict_to_keys

SCHEMA = {
    "raw": {
        "events": {"event_id": "INT", "user_id": "INT", "ts": "TIMESTAMP", "amount": "DOUBLE"},
        "users": {"user_id": "INT", "plan": "VARCHAR"},
    }
}

SESSIONS = """
WITH ordered AS (
    SELECT user_id, event_id, ts, amount,
           lag(ts) OVER (PARTITION BY user_id ORDER BY ts, event_id) AS prev_ts
    FROM raw.events
), numbered AS (
    SELECT user_id, ts, amount,
           sum(CASE WHEN prev_ts IS NULL OR ts - prev_ts > INTERVAL 2 HOUR THEN 1 ELSE 0 END)
               OVER (PARTITION BY user_id ORDER BY ts, event_id) AS session
    FROM ordered
)
SELECT user_id, session, count(*) AS events, sum(amount) AS revenue FROM numbered GROUP BY user_id, session
"""
DERIVED = """
SELECT user_id, n FROM (SELECT user_id, count(*) OVER (PARTITION BY user_id) AS n FROM raw.events) AS t
"""
NULLABLE = """
SELECT x.user_id AS paying_user, count(*) AS events
FROM raw.events AS e
LEFT JOIN (SELECT user_id FROM raw.users WHERE plan <> 'free') AS x ON e.user_id = x.user_id
GROUP BY x.user_id
"""
TWICE_READ_CTE = """
WITH per_user AS (SELECT user_id, count(*) AS n FROM raw.events GROUP BY user_id)
SELECT a.user_id, a.n, b.n AS same FROM per_user AS a JOIN per_user AS b ON a.user_id = b.user_id
"""


def restricted(sql: str, key: list[str]) -> exp.Query:
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
    assert isinstance(query, exp.Query)
    return restrict_to_keys(query, key, exp.to_table("keys", alias="k"))


def filtered_select(query: exp.Query) -> exp.Select:
    (exists,) = [e for e in query.find_all(exp.Exists) if "keys" in e.sql()]
    select = exists.find_ancestor(exp.Select)
    assert select is not None
    return select


@pytest.mark.parametrize(
    ("sql", "key", "pushed_down"),
    [
        (SESSIONS, ["user_id"], True),  # through both CTEs, into the SELECT reading raw.events
        (DERIVED, ["user_id"], True),  # into the derived table
        (NULLABLE, ["paying_user"], False),  # never into a LEFT JOIN's nullable side
        (TWICE_READ_CTE, ["user_id"], False),  # a CTE read twice is left alone
    ],
)
def test_filter_placement(sql: str, key: list[str], pushed_down: bool) -> None:
    query = restricted(sql, key)
    select = filtered_select(query)
    if pushed_down:  # onto the SELECT that reads the base table
        assert select is not query
        assert isinstance(select.args["from_"].this, exp.Table) and select.args["from_"].this.name == "events"
    else:
        assert select is query


@pytest.mark.parametrize(("sql", "key"), [(SESSIONS, ["user_id"]), (DERIVED, ["user_id"]), (NULLABLE, ["paying_user"])])
def test_same_rows_as_filtering_the_output(sql: str, key: list[str]) -> None:
    rng = random.Random(7)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.events (event_id INT, user_id INT, ts TIMESTAMP, amount DOUBLE)")
    con.execute("CREATE TABLE raw.users (user_id INT, plan VARCHAR)")
    users = [*range(1, 30), None]
    con.executemany(
        "INSERT INTO raw.events VALUES (?, ?, TIMESTAMP '2024-01-01' + to_minutes(?), ?)",
        [(i, rng.choice(users), rng.randint(0, 5000), rng.random() * 10) for i in range(400)],
    )
    con.executemany("INSERT INTO raw.users VALUES (?, ?)", [(u, rng.choice(["free", "pro"])) for u in range(1, 25)])
    name = key[0]
    con.execute(f"CREATE TABLE keys AS SELECT DISTINCT {name} FROM ({sql}) AS q USING SAMPLE 40 PERCENT (bernoulli, 3)")
    con.execute(f"INSERT INTO keys SELECT NULL WHERE NOT EXISTS (SELECT 1 FROM keys WHERE {name} IS NULL)")
    in_keys = f"EXISTS (SELECT 1 FROM keys AS k WHERE k.{name} IS NOT DISTINCT FROM q.{name})"
    expected = con.execute(f"SELECT * FROM ({sql}) AS q WHERE {in_keys}").fetchall()
    actual = con.execute(restricted(sql, key).sql(dialect="duckdb")).fetchall()
    assert sorted(actual, key=repr) == sorted(expected, key=repr)
    assert expected  # the sample kept some keys
