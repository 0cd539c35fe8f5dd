"""``columns_named``: the names by which a model may read a source's columns, or None where
it may read one it does not name. A keyed source's capture keeps only the columns inside
them (``capture.captured_columns``), so a name missed here is a change lost: a wrong table."""

from __future__ import annotations

import pytest
import sqlglot

from sqlorch.analysis.schemas import columns_named, columns_read, type_changes


def named(sql: str) -> frozenset[str] | None:
    return columns_named(sqlglot.parse_one(sql, read="duckdb"))


@pytest.mark.parametrize(
    ("sql", "read", "unread"),
    [
        ("SELECT a, SUM(b) AS s FROM t WHERE c > 1 GROUP BY a", {"a", "b", "c"}, {"d"}),
        ("SELECT COUNT(*) AS n FROM t", set(), {"a"}),
        ("SELECT x.a FROM t AS x JOIN u AS y USING (k)", {"a", "k"}, {"b"}),
        ("SELECT o.address.city FROM raw.orders AS o", {"address", "city"}, {"zip"}),
        ('WITH w AS (SELECT "Mixed" FROM t) SELECT "Mixed" FROM w', {"mixed"}, {"a"}),
        ("SELECT EXTRACT(year FROM d) AS y, list_transform(l, v -> v + 1) AS m FROM t", {"d", "l"}, {"a"}),
        # EXISTS asks only whether a row is there (TPC-H Q4, Q21, Q22)
        ("SELECT a FROM t WHERE NOT EXISTS (SELECT * FROM u WHERE u.k = t.k)", {"a", "k"}, {"b"}),
        # an output column named like a table read elsewhere, by its alias there (TPC-H Q8, Q9)
        (
            "SELECT nation, SUM(v) AS s FROM (SELECT n_name AS nation, v FROM raw.nation) AS p GROUP BY nation",
            {"v"},
            {"b"},
        ),
        ("SELECT nation FROM (SELECT n2.n_name AS nation FROM nation AS n1, nation AS n2) AS p", {"n_name"}, {"b"}),
    ],
)
def test_the_names_a_query_reads_its_columns_by(sql: str, read: set[str], unread: set[str]) -> None:
    names = named(sql)
    assert names is not None
    assert read <= names
    assert not unread & names


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM t",
        "SELECT x.* FROM t AS x",
        "SELECT * EXCLUDE (a) FROM t",
        "SELECT COLUMNS('a.*') FROM t",
        "SELECT a FROM t NATURAL JOIN u",
        "SELECT * FROM t PIVOT (SUM(v) FOR k IN ('x', 'y'))",
        "SELECT t FROM t",  # the whole row as a value
        "SELECT to_json(x) AS j FROM t AS x",
        "SELECT a FROM (SELECT * FROM t) AS s",
        "SELECT a FROM t WHERE EXISTS (SELECT * FROM (SELECT * FROM u) AS s)",  # the inner * is a projection
        "SELECT (SELECT t FROM u LIMIT 1) AS r FROM t",  # the outer row, in a subquery
        "SELECT nation FROM raw.nation",  # not aliased: the row of nation
    ],
)
def test_a_query_that_may_read_a_column_it_does_not_name(sql: str) -> None:
    assert named(sql) is None


def test_several_readers_of_one_source() -> None:
    queries = [sqlglot.parse_one(q) for q in ("SELECT a FROM t", "SELECT b FROM t WHERE c = 1")]
    assert {"a", "b", "c"} <= (columns_read(queries) or set())
    assert columns_read([*queries, sqlglot.parse_one("SELECT * FROM t")]) is None


def test_type_changes_are_the_columns_of_both_whose_type_text_differs() -> None:
    before = {"a": "INT", "b": "DECIMAL(12, 2)", "c": "UNKNOWN", "gone": "TEXT"}
    now = {"a": "BIGINT", "b": "DECIMAL(12, 2)", "c": "INT", "new": "TEXT"}
    assert type_changes(before, now) == {"a": "a INT -> BIGINT"}
