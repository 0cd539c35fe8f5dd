"""Rows paired by key on Postgres: the same truth as ``IS NOT DISTINCT FROM``, in a form the
server can hash or merge (planning/key_match.py). A nested loop here made a keyed source's
change capture quadratic: minutes for 600,000 rows, and four of a TPC-H step's rewrites
(a key table against lineitem or orders) most of the step's time."""

from __future__ import annotations

import itertools

import psycopg
import pytest
from sqlglot import exp

from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.restrict_to_keys import key_match
from sqlorch.planning.rewrites.signed_partition import TOUCHED, in_touched, rows_in_touched
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


# A rewrite pairs a key table with a model's stored rows, a source or recomputed rows: the
# two sides may differ in type. Each pair: (stored column type, key table column type),
# values stored, keys looked for; the CASE of both must pick one type, and the REAL against
# NUMERIC pair is where only the IS NOT DISTINCT FROM check keeps the truth (the common type
# REAL finds 0.1 = 0.1, ``=`` compares DOUBLEs and does not).
MIXED = [
    ("integer", "bigint", ["1", "2", "2147483647", None], ["1", "2147483647", "2147483648", None]),
    ("double precision", "numeric", ["0.1", "1", "2.5", None], ["0.1", "1.0", "2.50", "0.10000000000000000001"]),
    ("numeric(15,2)", "numeric", ["1.00", "0.10", "3.33", None], ["1", "0.1", "3.333", None]),
    ("varchar(8)", "text", ["a", "b ", "", None], ["a", "b", "", "a "]),
    ("real", "numeric", ["0.1", "1", "0.5", None], ["0.1", "1", "0.5", None]),
    ("date", "timestamp", ["2026-01-01", "2026-01-02", None], ["2026-01-01 00:00", "2026-01-02 00:00:01", None]),
    ("bigint", "integer", ["5", "-3", None], ["5", "3"]),
]


def _rewrite_semi_join(pairs: int, negated: bool) -> str:
    """The stored rows ``t`` whose key is (``negated``: is not) among the keys ``k``, as
    ``restrict_to_keys.key_match`` writes it for a recompute restricted to affected keys."""
    columns = [f"c{i}" for i in range(pairs)]
    match = key_match(exp.to_table("k", alias="k"), [(c, exp.column(c, table="t")) for c in columns])
    condition = exp.not_(match) if negated else match
    return exp.select("*").from_(exp.to_table("t")).where(condition).sql(dialect="postgres")


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
@pytest.mark.parametrize(("stored", "keyed", "values", "keys"), MIXED, ids=[f"{s}-{k}" for s, k, *_ in MIXED])
def test_a_rewrite_key_match_across_types_is_is_not_distinct_from(
    warehouse: Warehouse, stored: str, keyed: str, values: list[str | None], keys: list[str | None]
) -> None:
    with _connect(warehouse) as conn:
        conn.execute(f"CREATE TABLE t (c0 {stored}, n integer)")
        conn.execute(f"CREATE TABLE k (c0 {keyed})")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, %s)", [(v, i) for i, v in enumerate(values)])
            cur.executemany("INSERT INTO k VALUES (%s)", [(v,) for v in keys])
        for negated in (False, True):
            found = conn.execute(_rewrite_semi_join(1, negated) + " ORDER BY n").fetchall()
            reference = conn.execute(
                f"SELECT * FROM t WHERE {'NOT ' if negated else ''}EXISTS "
                "(SELECT 1 FROM k WHERE k.c0 IS NOT DISTINCT FROM t.c0) ORDER BY n"
            ).fetchall()
            assert found == reference, (negated, found, reference)
        # the stored rows of the keys, by a join (``replace_keys.stored_rows_of_keys``'s form)
        joined = (
            exp.select("t.n")
            .from_(exp.to_table("t"))
            .join(exp.to_table("k", alias="k"), on=null_safe_match("k", "t", ["c0"], any_types=True))
        )
        reference_join = "SELECT t.n FROM t JOIN k ON k.c0 IS NOT DISTINCT FROM t.c0 ORDER BY 1"
        assert (
            conn.execute(joined.sql(dialect="postgres") + " ORDER BY 1").fetchall()
            == conn.execute(reference_join).fetchall()
        )


def _plan(conn: psycopg.Connection[tuple[object, ...]], query: str) -> str:
    return "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + query).fetchall())


def _hashed_or_merged(plan: str) -> None:
    assert "Nested Loop" not in plan, plan
    assert "Hash Cond" in plan or "Merge Cond" in plan, plan


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_a_rewrite_key_join_of_two_types_is_hashed_not_a_nested_loop(warehouse: Warehouse) -> None:
    """A large table (a source, a stored model) against a small key table whose columns
    have other types (BIGINT keys of an INTEGER column, NUMERIC of a DOUBLE one)."""
    with _connect(warehouse) as conn:
        conn.execute(
            "CREATE TABLE t AS SELECT g AS c0, (g % 1000)::double precision AS c1, g % 7 AS v "
            "FROM generate_series(1, 50000) g"
        )
        conn.execute(
            "CREATE TABLE k AS SELECT g::bigint AS c0, (g % 1000)::numeric AS c1 FROM generate_series(1, 500) g"
        )
        conn.execute(f'CREATE TABLE touched AS SELECT g::bigint AS "{TOUCHED}" FROM generate_series(1, 300) g')
        conn.execute("ANALYZE")
        # affected keys: the recompute restricted to them, and the rows they leave alone
        for negated in (False, True):
            _hashed_or_merged(_plan(conn, _rewrite_semi_join(2, negated)))
        # a partitioned model's rows now in the touched partitions (``signed_partition.in_touched``)
        rows_now = (
            exp.select("*")
            .from_(exp.to_table("t"))
            .where(in_touched(exp.column("c0", table="t"), exp.to_table("touched")))
        )
        _hashed_or_merged(_plan(conn, rows_now.sql(dialect="postgres")))
        # the stored rows of the keys (``replace_keys.stored_rows_of_keys``) and the key MERGE's ON
        joined = (
            exp.select("t.v")
            .from_(exp.to_table("t"))
            .join(exp.to_table("k", alias="k"), on=null_safe_match("k", "t", ["c0", "c1"], any_types=True))
        )
        _hashed_or_merged(_plan(conn, joined.sql(dialect="postgres")))


# Values per type, a NULL with each: pairs that are equal, equal only after a cast, and
# near misses (0.1 as REAL, DOUBLE and NUMERIC; trailing blanks; a bigint past int).
VALUES_BY_TYPE = {
    "smallint": ["1", "-2"],
    "integer": ["1", "2147483647"],
    "bigint": ["1", "2147483648", "-2"],
    "numeric": ["1.0", "0.1", "0.10000000000000000001", "1.5"],
    "numeric(15,2)": ["1.00", "0.10", "1.50"],
    "real": ["0.1", "1", "1.5"],
    "double precision": ["0.1", "1", "1.5"],
    "text": ["a", "a ", ""],
    "varchar(3)": ["a", "a ", ""],
    "char(3)": ["a", ""],
    "boolean": ["true", "false"],
    "date": ["2026-01-01"],
    "timestamp": ["2026-01-01", "2026-01-01 00:00:01"],
    "timestamptz": ["2026-01-01 00:00:00+00", "2026-01-01 01:00:00+01"],
}
# The one known exception (planning/key_match.py): a CHAR(n) first against a VARCHAR second.
EXCEPTION = ("char(3)", "varchar(3)")


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_every_pair_of_types_matches_as_is_not_distinct_from_but_the_one_documented(warehouse: Warehouse) -> None:
    tables = {kind: f"v{index}" for index, kind in enumerate(VALUES_BY_TYPE)}
    differing = []
    with _connect(warehouse) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for kind, values in VALUES_BY_TYPE.items():
            conn.execute(f"CREATE TABLE {tables[kind]} (c {kind})")
            conn.execute(
                f"INSERT INTO {tables[kind]} SELECT CAST(v AS {kind}) FROM unnest(%s::text[]) v", [[*values, None]]
            )
        for (left, a), (right, b) in itertools.product(tables.items(), repeat=2):
            pair = null_safe_match("x", "y", ["c"], any_types=True).sql(dialect="postgres")
            try:
                reference = conn.execute(f"SELECT x.c IS NOT DISTINCT FROM y.c FROM {a} x, {b} y").fetchall()
            except psycopg.errors.UndefinedFunction:  # no = for these types: neither spelling compares
                with pytest.raises((psycopg.errors.UndefinedFunction, psycopg.errors.DatatypeMismatch)):
                    conn.execute(f"SELECT {pair} FROM {a} x, {b} y")
                continue
            found = conn.execute(f"SELECT {pair} FROM {a} x, {b} y").fetchall()
            if found != reference:
                differing.append((left, right))
    assert differing == [EXCEPTION]


def _rows_now(column: str) -> str:
    """A partitioned model's rows now of a source in the touched partitions, as the signed
    statements write them on Postgres (``signed_partition.rows_in_touched``)."""
    rows = exp.select(exp.column("k", table="t"), exp.column("v", table="t")).from_(exp.to_table("t", alias="t"))
    key = exp.column(column, table="t")
    return rows_in_touched(rows, key, exp.to_table("touched"), by_index=True).sql(dialect="postgres")


@pytest.mark.parametrize("warehouse", ["postgres"], indirect=True)
def test_rows_now_of_touched_partitions_are_read_through_the_index_null_keys_included(warehouse: Warehouse) -> None:
    with _connect(warehouse) as conn:
        conn.execute(
            "CREATE TABLE t AS SELECT CASE WHEN g % 1000 = 0 THEN NULL ELSE g % 5000 END AS k, "
            "(g % 100)::double precision AS f, g AS v FROM generate_series(1, 100000) g"
        )
        conn.execute("CREATE INDEX ON t (k)")
        conn.execute(f'CREATE TABLE touched ("{TOUCHED}" bigint)')
        conn.execute("INSERT INTO touched SELECT g * 97 FROM generate_series(1, 40) g")
        conn.execute("ANALYZE")

        def same_as_is_not_distinct_from(column: str) -> None:
            found = conn.execute(_rows_now(column) + " ORDER BY 1, 2").fetchall()
            reference = conn.execute(
                f'SELECT k, v FROM t WHERE EXISTS (SELECT 1 FROM touched WHERE "{TOUCHED}" '
                f"IS NOT DISTINCT FROM t.{column}) ORDER BY 1, 2"
            ).fetchall()
            assert found == reference

        same_as_is_not_distinct_from("k")  # INTEGER rows, BIGINT keys
        # whether an index path exists at all (the planner takes it where it costs less than
        # a scan: keys whose rows lie together, as TPC-H Q21's orders in lineitem): with
        # sequential scans priced out, the array form still scans the table whole
        conn.execute("SET enable_seqscan = off")
        plan = _plan(conn, "(ANALYZE, TIMING OFF) " + _rows_now("k"))
        conn.execute("RESET enable_seqscan")
        assert f"Index Cond: (k = touched.{TOUCHED})" in plan, plan
        scanned_whole = [
            line for line in plan.splitlines() if "Seq Scan on t " in line and "never executed" not in line
        ]
        assert not scanned_whole, plan  # the NULL branch's scan never starts: no touched key is NULL

        conn.execute("INSERT INTO touched VALUES (NULL)")  # a NULL partition key was touched
        conn.execute(f'ALTER TABLE touched ALTER COLUMN "{TOUCHED}" TYPE numeric')  # DOUBLE rows, NUMERIC keys
        conn.execute("INSERT INTO touched VALUES (0.5), (3)")
        same_as_is_not_distinct_from("k")
        same_as_is_not_distinct_from("f")
