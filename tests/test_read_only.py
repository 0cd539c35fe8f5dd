"""Models are read-only queries: pairs of model SQL and the error it must raise (or none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlorch.errors import ParseError
from sqlorch.project.parsing import parse_model_sql

REJECTED = [
    # (model SQL, fragment of the message, line:col of the offending node)
    ("WITH d AS (DELETE FROM raw.orders WHERE id = 1 RETURNING *) SELECT * FROM d", "found DELETE", "1:12"),
    ("WITH d AS (INSERT INTO raw.orders VALUES (1) RETURNING *) SELECT * FROM d", "found INSERT", "1:12"),
    ("WITH d AS (UPDATE raw.orders SET a = 1 RETURNING *) SELECT * FROM d", "found UPDATE", "1:12"),
    ("WITH d AS (MERGE INTO raw.o USING s ON o.a = s.a WHEN MATCHED THEN DELETE) SELECT 1 AS a", "found MERGE", "1:12"),
    ("WITH d AS (CREATE TABLE x AS SELECT 1) SELECT 1 AS a", "found CREATE", "1:12"),
    (
        "WITH a AS (SELECT 1 AS x),\n  d AS (\n    DELETE FROM raw.orders RETURNING *)\nSELECT * FROM d",
        "found DELETE",
        "3:5",
    ),
    ("SELECT * INTO raw.copy FROM raw.orders", "found INTO", "1:10"),
    ("SELECT * FROM raw.orders FOR UPDATE", "found FOR UPDATE", "1:26"),
    ("COPY raw.orders TO 'out.csv'", "a model must be a SELECT query, found COPY", "1:1"),
    ("ATTACH 'other.db' AS other", "found ATTACH", "1:1"),
    ("PRAGMA version", "found PRAGMA", "1:1"),
    ("SET threads = 1", "found SET", "1:1"),
    ("CALL pragma_version()", "found CALL", "1:1"),
    ("INSTALL httpfs", "found INSTALL", "1:1"),
    ("LOAD httpfs", "found LOAD", "1:1"),
    ("DESCRIBE SELECT 1", "found DESCRIBE", "1:1"),
    ("EXPORT DATABASE 'dir'", "syntax error", "1:17"),
    ("SELECT 1 AS a;\nSELECT 2 AS b", "found 2 statements", "2:1"),
    ("SELECT 1 AS a;\nDELETE FROM raw.orders", "found 2 statements", "2:1"),
    ("SELECT * FROM read_csv('x.csv')", "table function read_csv()", "1:15"),
    ("SELECT * FROM read_parquet('s3://bucket/x.parquet')", "table function read_parquet()", "1:15"),
    ("SELECT * FROM glob('/etc/*')", "table function glob()", "1:15"),
    ("SELECT * FROM sqlite_scan('x.db', 't')", "table function sqlite_scan()", "1:15"),
    ("SELECT * FROM postgres_scan('', 'public', 't')", "table function postgres_scan()", "1:15"),
    ("SELECT * FROM query('SELECT 1')", "table function query()", "1:15"),
    ("SELECT 1 AS a UNION ALL SELECT * FROM read_json('x.json')", "table function read_json()", "1:39"),
    ("SELECT a FROM t WHERE a IN (SELECT * FROM read_text('/etc/passwd'))", "table function read_text()", "1:43"),
    ("SELECT * FROM 'orders.csv'", "table name 'orders.csv'", "1:15"),
    ('SELECT * FROM main."/tmp/x.csv"', "table name '/tmp/x.csv'", "1:15"),
    ("SELECT nextval('seq') AS n", "function nextval()", "1:8"),
    ("SELECT getenv('HOME') AS h", "function getenv()", "1:8"),
    ("SELECT current_setting('s3_secret_access_key') AS s", "function current_setting()", "1:8"),
]

ACCEPTED = [
    "SELECT * FROM range(10) AS t(i)",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT x FROM unnest([1, 2]) AS t(x)",
    "SELECT o.id, u.x FROM raw.orders AS o, unnest(o.items) AS u(x)",
    "SELECT * FROM (VALUES (1), (2)) AS t(a)",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SELECT a, row_number() OVER (PARTITION BY a ORDER BY b) AS rn FROM t QUALIFY rn = 1",
    "SELECT list_transform([1], x -> x + 1) AS l, {'a': 1} AS s, struct_pack(a := 1) AS p",
    "SELECT * EXCLUDE (a) FROM t",
    "SELECT * FROM t PIVOT (sum(a) FOR b IN ('x'))",
    "SELECT * FROM t ASOF JOIN u ON t.a >= u.a",
    "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a) ORDER BY a LIMIT 3",
    'SELECT "my col", "order", "Größe" FROM raw."we""ird"',
    "SELECT c.a FROM c LEFT OUTER JOIN o ON c.a = o.a AND o.b NOT LIKE '%x%'",  # AND is a Func in sqlglot
]


@pytest.mark.parametrize(("sql", "fragment", "where"), REJECTED, ids=[case[0][:40] for case in REJECTED])
def test_rejected(sql: str, fragment: str, where: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_model_sql(sql, "duckdb", Path("models/m/a.sql"))
    text = info.value.render()
    assert text.startswith(f"models/m/a.sql:{where}: error: "), text
    assert fragment in text, text


@pytest.mark.parametrize("sql", ACCEPTED)
def test_accepted(sql: str) -> None:
    parse_model_sql(sql, "duckdb", Path("models/m/a.sql"))


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("snowflake", "SELECT f.value FROM t, LATERAL FLATTEN(input => t.a) AS f"),
        ("snowflake", "SELECT seq4() AS n FROM TABLE(GENERATOR(rowcount => 10))"),
        ("postgres", "SELECT e FROM t, jsonb_array_elements(t.j) AS e"),
        ("bigquery", "SELECT x FROM UNNEST([1, 2]) AS x"),
    ],
)
def test_pure_table_functions_of_other_dialects(dialect: str, sql: str) -> None:
    parse_model_sql(sql, dialect, Path("models/m/a.sql"))


def test_postgres_side_effects_rejected() -> None:
    with pytest.raises(ParseError, match="pg_read_file"):
        parse_model_sql("SELECT pg_read_file('/etc/passwd') AS p", "postgres", Path("a.sql"))
    with pytest.raises(ParseError, match="dblink"):
        parse_model_sql("SELECT * FROM dblink('host=x', 'DELETE FROM t') AS d(a int)", "postgres", Path("a.sql"))
