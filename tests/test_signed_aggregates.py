"""The signed-delta rewrite (planning/rewrites/signed_aggregates.py): which shapes have it and
why not, the statements it writes for one model (SQL in, statements out), and the algebra run
in DuckDB: stored state + weighted delta, finalised, equals the model evaluated from scratch
after random inserts, updates and deletes of both sides of a join."""

from __future__ import annotations

import random
from decimal import Decimal

import duckdb
import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from sqlorch.analysis.keys import analyse_keys
from sqlorch.analysis.signed_shape import aggregates_of
from sqlorch.planning.rewrites.signed_aggregates import (
    ROWS,
    WEIGHT,
    build_delta,
    build_finalise,
    build_next_state,
    build_recompute_keys,
    build_state_query,
    state_parts,
)
from sqlorch.planning.rewrites.signed_derived import RowsFor

SCHEMA = {
    "raw": {
        "items": {"id": "INT", "sku": "VARCHAR", "qty": "INT", "price": "DECIMAL(12,2)", "weight": "DOUBLE"},
        "skus": {"sku": "VARCHAR", "family": "VARCHAR"},
    }
}
COLUMNS = {"items": ["id", "sku", "qty", "price", "weight"], "skus": ["sku", "family"]}


def analysed(sql: str):
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
    assert isinstance(query, exp.Query)
    return analyse_keys(query, (), MappingSchema(SCHEMA, dialect="duckdb"), "duckdb")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("SELECT sku, count(*) AS n, sum(qty) AS q, avg(qty) AS p, min(qty) AS lo FROM raw.items GROUP BY sku", ""),
        ("SELECT sku, avg(price) AS p FROM raw.items GROUP BY sku", "extended precision"),
        ("SELECT count(*) AS n, sum(price) FILTER (WHERE qty > 1) AS p FROM raw.items", ""),
        ("SELECT s.family, sum(i.qty) AS q FROM raw.items i JOIN raw.skus s ON i.sku = s.sku GROUP BY s.family", ""),
        ("SELECT sku, count(DISTINCT qty, sku) AS n FROM raw.items GROUP BY sku", "DISTINCT aggregate of several"),
        ("SELECT sku, sum(weight) AS w FROM raw.items GROUP BY sku", "floating-point"),
        (
            "SELECT s.family, count(*) AS n FROM raw.items i LEFT JOIN raw.skus s ON i.sku = s.sku GROUP BY s.family",
            "LEFT",
        ),
        ("SELECT sku, string_agg(id::VARCHAR) AS ids FROM raw.items GROUP BY sku", "no signed-delta form"),
        ("SELECT sku, n FROM (SELECT sku, count(*) AS n FROM raw.items GROUP BY sku) t", "no GROUP BY"),
        (
            "SELECT q, count(*) AS n FROM (SELECT sku, sum(qty) AS q FROM raw.items GROUP BY sku) t GROUP BY q",
            "no column identifies",
        ),
    ],
)
def test_which_shapes_have_signed_deltas(sql: str, reason: str) -> None:
    assert_signed_verdict(sql, reason)


def assert_signed_verdict(sql: str, reason: str) -> None:
    """The model has a signed-delta form (``reason`` empty), or says why not (``reason`` in it)."""
    keys = analysed(sql)
    if reason:
        assert reason in f"{keys.not_signed} {keys.reason}", keys.not_signed
    else:
        assert keys.not_signed == "", keys.not_signed


MODEL = (
    "SELECT sku, count(*) AS n, sum(qty) FILTER (WHERE qty > 1) AS q, avg(qty) AS p, max(price) AS hi "
    "FROM raw.items GROUP BY sku HAVING count(*) > 1"
)
STATE = (
    'SELECT "items"."sku" AS "sku", COALESCE(SUM(1), 0) AS "_sqlorch_rows", '
    'COALESCE(SUM(1), 0) AS "_sqlorch_a0_c", '
    'COALESCE(SUM(CASE WHEN "items"."qty" > 1 THEN "items"."qty" END), 0) AS "_sqlorch_a1_s", '
    'COALESCE(SUM(CASE WHEN "items"."qty" > 1 AND NOT "items"."qty" IS NULL THEN 1 ELSE 0 END), 0) AS "_sqlorch_a1_n", '
    'COALESCE(SUM("items"."qty"), 0) AS "_sqlorch_a2_s", '
    'COALESCE(SUM(CASE WHEN NOT "items"."qty" IS NULL THEN 1 ELSE 0 END), 0) AS "_sqlorch_a2_n", '
    'MAX("items"."price") AS "_sqlorch_a3_m" '
    'FROM "raw"."items" AS "items" GROUP BY "items"."sku"'
)
FINALISE = (
    'SELECT "sku", CAST("_sqlorch_a0_c" AS BIGINT) AS "n", '
    'CASE WHEN "_sqlorch_a1_n" > 0 THEN "_sqlorch_a1_s" END AS "q", '
    'CASE WHEN "_sqlorch_a2_n" > 0 THEN CAST("_sqlorch_a2_s" AS DOUBLE) / CAST("_sqlorch_a2_n" AS DOUBLE) END AS "p", '
    '"_sqlorch_a3_m" AS "hi" FROM state WHERE "_sqlorch_rows" > 0 AND CAST("_sqlorch_a0_c" AS BIGINT) > 1'
)
RECOMPUTE = (
    'SELECT "d"."sku" FROM delta AS d LEFT JOIN state AS s ON "d"."sku" IS NOT DISTINCT FROM "s"."sku" '
    'WHERE NOT "d"."_sqlorch_a3_r" IS NULL '
    'AND ("s"."_sqlorch_a3_m" IS NULL OR "d"."_sqlorch_a3_r" >= "s"."_sqlorch_a3_m")'
)


def test_statements_for_one_model() -> None:
    keys = analysed(MODEL)
    assert keys.not_signed == "" and keys.key == ["sku"]
    top = keys.inlined
    assert isinstance(top, exp.Select)
    assert build_state_query(top, ["sku"]).sql("duckdb") == STATE
    assert build_finalise(top, ["sku"], exp.to_table("state")).sql("duckdb") == FINALISE
    recompute = build_recompute_keys(top, ["sku"], exp.to_table("delta", alias="d"), exp.to_table("state", alias="s"))
    assert recompute is not None and recompute.sql("duckdb") == RECOMPUTE
    delta = build_delta(
        top,
        ["sku"],
        lambda t: t.name == "items",
        lambda t: exp.select("*").from_("chg"),
        lambda t: exp.select("*").from_("old"),
    ).sql("duckdb")
    # the changed rows weighted, a weight of -1 negating the summed value, the extreme of the rows that left
    assert 'FROM (SELECT * FROM chg) AS "items"' in delta
    assert 'CASE WHEN "items"."_sqlorch_w" < 0 THEN -("items"."qty") ELSE "items"."qty" END' in delta
    assert 'MAX(CASE WHEN "items"."_sqlorch_w" < 0 THEN "items"."price" END) AS "_sqlorch_a3_r"' in delta


SHAPES = {
    "plain": "SELECT sku, count(*) AS n, count(qty) AS nq, sum(qty) AS q, avg(qty) AS p, min(price) AS lo, "
    "max(qty) AS hi FROM raw.items GROUP BY sku",
    "moving": "SELECT qty, count(*) AS n, sum(price) AS total FROM raw.items GROUP BY qty",
    "filter_case_having": "SELECT sku, sum(price) FILTER (WHERE qty > 2) AS big, "
    "count(*) FILTER (WHERE qty = 0) AS none, "
    "sum(CASE WHEN qty > 0 THEN qty ELSE 0 END) AS pos, sum(qty * price) / nullif(sum(qty), 0) AS wavg "
    "FROM raw.items GROUP BY sku HAVING count(*) > 2 AND min(qty) < 3",
    "global": "SELECT count(*) AS n, sum(qty) AS q, avg(qty) AS p, sum(price) AS total, max(price) AS hi "
    "FROM raw.items",
    "join": "SELECT s.family, count(*) AS n, sum(i.qty) AS q, min(i.price) AS lo "
    "FROM raw.items i JOIN raw.skus s ON i.sku = s.sku GROUP BY s.family",
    "derived_self_join": "SELECT family, count(*) AS n, sum(q) AS q FROM (SELECT s.family, a.qty + b.qty AS q "
    "FROM raw.items a, raw.items b, raw.skus s WHERE a.sku = b.sku AND a.id < b.id AND s.sku = a.sku) t "
    "GROUP BY family",
}
SKUS = ["a", "b", "c", None]
FAMILIES = ["x", "y", None]


def _item(rng: random.Random, item_id: int) -> tuple:
    price = None if rng.random() < 0.1 else Decimal(rng.randint(0, 3000)) / 100
    return (item_id, rng.choice(SKUS), None if rng.random() < 0.1 else rng.randint(0, 5), price, 1.0)


def _change(con: duckdb.DuckDBPyConnection, rng: random.Random, next_id: list[int]) -> None:
    """Random inserts, updates (moving rows between groups) and deletes of both tables,
    logged as old (-1) and new (+1) images in chg_items / chg_skus."""
    con.execute("DELETE FROM chg_items; DELETE FROM chg_skus")
    ids = [r[0] for r in con.execute("SELECT id FROM raw.items").fetchall()]
    for item_id in rng.sample(ids, min(len(ids), rng.randint(0, 6))):
        old = con.execute("SELECT * FROM raw.items WHERE id = ?", [item_id]).fetchone()
        con.execute("INSERT INTO chg_items VALUES (?, ?, ?, ?, ?, -1)", list(old))
        if rng.random() < 0.4:
            con.execute("DELETE FROM raw.items WHERE id = ?", [item_id])
            continue
        new = _item(rng, item_id)
        con.execute("UPDATE raw.items SET sku = ?, qty = ?, price = ? WHERE id = ?", [new[1], new[2], new[3], item_id])
        con.execute("INSERT INTO chg_items VALUES (?, ?, ?, ?, ?, 1)", list(new))
    for _ in range(rng.randint(0, 5)):
        new = _item(rng, next_id[0])
        next_id[0] += 1
        con.execute("INSERT INTO raw.items VALUES (?, ?, ?, ?, ?)", list(new))
        con.execute("INSERT INTO chg_items VALUES (?, ?, ?, ?, ?, 1)", list(new))
    if rng.random() < 0.5:
        sku = rng.choice(["a", "b", "c"])
        old = con.execute("SELECT * FROM raw.skus WHERE sku = ?", [sku]).fetchall()
        for row in old:
            con.execute("INSERT INTO chg_skus VALUES (?, ?, -1)", list(row))
        con.execute("DELETE FROM raw.skus WHERE sku = ?", [sku])
        if rng.random() < 0.7:
            family = rng.choice(FAMILIES)
            con.execute("INSERT INTO raw.skus VALUES (?, ?)", [sku, family])
            con.execute("INSERT INTO chg_skus VALUES (?, ?, 1)", [sku, family])


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def items_world(rng: random.Random) -> tuple[duckdb.DuckDBPyConnection, RowsFor, RowsFor]:
    """``raw.items`` (fifteen random items) and ``raw.skus`` with their change tables
    ``chg_*``, and how a delta reads them: the change's weighted rows, and the rows before it
    (the rows now and the change turned round)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.items (id INT, sku VARCHAR, qty INT, price DECIMAL(12,2), weight DOUBLE)")
    con.execute("CREATE TABLE raw.skus (sku VARCHAR, family VARCHAR)")
    con.execute(f"CREATE TABLE chg_items AS SELECT *, 1 AS {WEIGHT} FROM raw.items WHERE false")
    con.execute(f"CREATE TABLE chg_skus AS SELECT *, 1 AS {WEIGHT} FROM raw.skus WHERE false")
    con.execute("INSERT INTO raw.skus VALUES ('a', 'x'), ('b', 'x'), ('c', 'y')")
    for item_id in range(1, 16):
        con.execute("INSERT INTO raw.items VALUES (?, ?, ?, ?, ?)", list(_item(rng, item_id)))

    def delta_rows(table: exp.Table) -> exp.Query:
        return exp.select(*[exp.column(c) for c in COLUMNS[table.name]], exp.column(WEIGHT)).from_(f"chg_{table.name}")

    def old_rows(table: exp.Table) -> exp.Query:
        cols = COLUMNS[table.name]
        now = exp.select(*[exp.column(c) for c in cols], exp.alias_(exp.Literal.number(1), WEIGHT)).from_(
            f"raw.{table.name}"
        )
        flipped = exp.select(*[exp.column(c) for c in cols], exp.Neg(this=exp.column(WEIGHT))).from_(
            f"chg_{table.name}"
        )
        return exp.union(now, flipped, distinct=False)

    return con, delta_rows, old_rows


def fold_into_state(
    con: duckdb.DuckDBPyConnection, top: exp.Select, key: list[str], extra: tuple[exp.Query, ...] = ()
) -> None:
    """Fold the table ``delta`` into ``state`` as the planner's statements do: the touched
    groups' next state (MIN/MAX recomputed where their extreme left), which replaces them."""
    names = [*key, ROWS, *(n for n, _ in state_parts(aggregates_of(top)))]
    recompute = build_recompute_keys(top, key, exp.to_table("delta", alias="d"), exp.to_table("state", alias="s"))
    if recompute is not None:
        con.execute(f"CREATE OR REPLACE TABLE recompute AS {recompute.sql('duckdb')}")
    following = build_next_state(
        top,
        key,
        exp.to_table("state", alias="s"),
        exp.to_table("delta", alias="d"),
        exp.to_table("recompute", alias="r") if recompute is not None else None,
        build_state_query(top, key),
        extra,
    )
    con.execute(f"CREATE OR REPLACE TABLE next AS {following.sql('duckdb')}")
    cols = ", ".join(f'"{n}"' for n in names)
    match = " AND ".join(f'state."{n}" IS NOT DISTINCT FROM d."{n}"' for n in key) or "true"
    con.execute(f"DELETE FROM state WHERE EXISTS (SELECT 1 FROM delta d WHERE {match})")
    keep = f'WHERE "{ROWS}" > 0' if key else ""
    con.execute(f"INSERT INTO state ({cols}) SELECT {cols} FROM next {keep}")


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_state_plus_delta_equals_from_scratch(shape: str, seed: int) -> None:
    rng = random.Random(seed)
    keys = analysed(SHAPES[shape])
    assert keys.not_signed == "", keys.not_signed
    top, key = keys.inlined, keys.key
    assert isinstance(top, exp.Select) and key is not None
    con, delta_rows, old_rows = items_world(rng)
    next_id = [16]
    con.execute(f"CREATE TABLE state AS {build_state_query(top, key).sql('duckdb')}")

    for step in range(6):
        _change(con, rng, next_id)
        delta = build_delta(top, key, lambda t: True if t.name in ("items", "skus") else False, delta_rows, old_rows)
        con.execute(f"CREATE OR REPLACE TABLE delta AS {delta.sql('duckdb')}")
        fold_into_state(con, top, key)
        got = _rows(con, build_finalise(top, key, exp.to_table("state")).sql("duckdb"))
        want = _rows(con, SHAPES[shape])
        assert got == want, f"{shape} seed {seed} step {step}"
