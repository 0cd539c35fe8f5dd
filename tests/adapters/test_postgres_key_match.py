"""Rows paired by key on Postgres: the same truth as ``IS NOT DISTINCT FROM``, in a form the
server can hash or merge (planning/key_match.py). A nested loop here made a keyed source's
change capture quadratic: minutes for 600,000 rows."""

from __future__ import annotations

import psycopg
import pytest
from sqlglot import exp

from sqlorch.planning.key_match import null_safe_match
from tests.adapters.conftest import Warehouse


def _connect(warehouse: Warehouse) -> psycopg.Connection[tuple[object, ...]]:
    settings = {k: warehouse.settings[k] for k in ("host", "port", "user", "dbname")}
    return psycopg.connect(**settings, autocommit=True)


def _unmatched(columns: list[str]) -> str:
    """The rows of ``a`` with no row of ``b`` equal on ``columns``, as the change capture writes it."""
    paired = (
        exp.select(exp.Literal.number(1))
        .from_(exp.to_table("b"))
        .where(null_safe_match("a", "b", columns, hashable=True))
    )
    query = exp.select("*").from_(exp.to_table("a")).where(exp.not_(exp.Exists(this=paired)))
    return query.sql(dialect="postgres")


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_null_keys_pair_as_is_not_distinct_from_would(warehouse: Warehouse) -> None:
    with _connect(warehouse) as conn:
        conn.execute("CREATE TABLE a (k integer, amount numeric, day date)")
        conn.execute("CREATE TABLE b (k integer, amount numeric, day date)")
        rows = [(1, "1.0", "2026-01-01"), (None, "2", None), (3, None, "2026-01-03"), (4, "4", "2026-01-04")]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO a VALUES (%s, %s, %s)", rows)
            # 1.00 equals 1.0; NULL pairs with NULL; 4 differs by its day; nothing for 3
            cur.executemany(
                "INSERT INTO b VALUES (%s, %s, %s)",
                [(1, "1.00", "2026-01-01"), (None, "2", None), (4, "4", "2026-02-04"), (None, None, None)],
            )
        found = conn.execute(_unmatched(["k", "amount", "day"]) + " ORDER BY k").fetchall()
        assert [row[0] for row in found] == [3, 4]
        reference = conn.execute(
            "SELECT * FROM a WHERE NOT EXISTS (SELECT 1 FROM b WHERE a.k IS NOT DISTINCT FROM b.k "
            "AND a.amount IS NOT DISTINCT FROM b.amount AND a.day IS NOT DISTINCT FROM b.day) ORDER BY k"
        ).fetchall()
        assert found == reference


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_key_diff_is_not_a_nested_loop(warehouse: Warehouse) -> None:
    with _connect(warehouse) as conn:
        for table in ("a", "b"):
            conn.execute(f"CREATE TABLE {table} AS SELECT g AS k, g % 7 AS v FROM generate_series(1, 20000) g")
        conn.execute("ANALYZE")
        plan = "\n".join(row[0] for row in conn.execute("EXPLAIN " + _unmatched(["k", "v"])).fetchall())
        assert "Nested Loop" not in plan, plan
        assert "Anti Join" in plan, plan
