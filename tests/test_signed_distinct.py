"""COUNT/SUM/AVG(DISTINCT x) maintained from signed deltas (planning/rewrites/signed_distinct.py):
which shapes have it, and the algebra run in DuckDB: stored group state and (group, value)
multiplicities plus the weighted change, finalised, equal the model evaluated from scratch
after random inserts, updates (rows and values moving between groups), deletes and NULLs on
both sides of a join."""

from __future__ import annotations

import random

import pytest
from sqlglot import exp
from test_signed_aggregates import _change, _rows, analysed, assert_signed_verdict, fold_into_state, items_world

from sqlorch.planning.rewrites.signed_aggregates import (
    ROWS,
    build_delta_from_rows,
    build_finalise,
    build_signed_rows,
    build_state_query,
)
from sqlorch.planning.rewrites.signed_distinct import (
    build_distinct_change,
    build_values_next_from_rows,
    build_values_query,
    value_columns,
    value_sets,
)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "SELECT sku, count(DISTINCT qty) AS n, sum(DISTINCT qty) AS s, avg(DISTINCT qty) AS a FROM raw.items "
            "GROUP BY sku",
            "",
        ),
        (
            "SELECT sku, count(DISTINCT qty) FILTER (WHERE price > 1) AS n, min(DISTINCT qty) AS lo FROM raw.items "
            "GROUP BY sku",
            "",
        ),
        ("SELECT sku, count(DISTINCT (qty, price)) AS n FROM raw.items GROUP BY sku", "several arguments"),
        ("SELECT sku, sum(DISTINCT weight) AS w FROM raw.items GROUP BY sku", "floating-point"),
        ("SELECT sku, avg(DISTINCT price) AS p FROM raw.items GROUP BY sku", "extended precision"),
        (
            "SELECT t.sku, sum(t.n) AS n FROM (SELECT sku, count(DISTINCT qty) AS n FROM raw.items GROUP BY sku) t "
            "JOIN raw.skus s ON s.sku = t.sku GROUP BY t.sku",
            "derived table",
        ),
    ],
)
def test_which_distinct_shapes_have_signed_deltas(sql: str, reason: str) -> None:
    assert_signed_verdict(sql, reason)


def test_count_and_sum_of_one_argument_share_its_values() -> None:
    keys = analysed(
        "SELECT sku, count(DISTINCT qty) AS n, sum(DISTINCT qty) AS s, count(DISTINCT qty) FILTER (WHERE qty > 1) AS b,"
        " count(DISTINCT price) AS p FROM raw.items GROUP BY sku"
    )
    assert isinstance(keys.inlined, exp.Select)
    assert [s.aggregates for s in value_sets(keys.inlined)] == [(0, 1), (2,), (3,)]


SHAPES = {
    "plain": "SELECT sku, count(DISTINCT qty) AS n, count(*) AS lines, sum(DISTINCT qty) AS sq, "
    "avg(DISTINCT qty) AS aq, sum(DISTINCT price) AS sp FROM raw.items GROUP BY sku",
    "filter_having": "SELECT sku, count(DISTINCT price) FILTER (WHERE qty > 1) AS n, max(price) AS hi "
    "FROM raw.items GROUP BY sku HAVING count(DISTINCT qty) > 1",
    "global": "SELECT count(DISTINCT sku) AS skus, count(DISTINCT qty) AS qtys, sum(qty) AS q FROM raw.items",
    "join": "SELECT s.family, count(DISTINCT i.sku) AS skus, count(DISTINCT i.qty) AS qtys, min(i.price) AS lo "
    "FROM raw.items i JOIN raw.skus s ON i.sku = s.sku GROUP BY s.family",
    "moving": "SELECT qty, count(DISTINCT sku) AS skus, count(DISTINCT id % 3) AS buckets FROM raw.items GROUP BY qty",
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_state_values_and_delta_equal_from_scratch(shape: str, seed: int) -> None:
    rng = random.Random(seed)
    keys = analysed(SHAPES[shape])
    assert keys.not_signed == "", keys.not_signed
    top, key = keys.inlined, keys.key
    assert isinstance(top, exp.Select) and key is not None
    sets = value_sets(top)
    assert sets
    con, delta_rows, old_rows = items_world(rng)
    next_id = [16]
    con.execute(f"CREATE TABLE state AS {build_state_query(top, key).sql('duckdb')}")
    for index, values in enumerate(sets):
        con.execute(f"CREATE TABLE m{index} AS {build_values_query(top, key, values).sql('duckdb')}")

    def changed(table: exp.Table) -> bool:
        return table.name in ("items", "skus")

    for step in range(6):
        _change(con, rng, next_id)
        # the change's weighted rows, read once: the delta and the values' change from them
        rows = build_signed_rows(top, key, changed, delta_rows, old_rows)
        con.execute(f"CREATE OR REPLACE TABLE signed AS {rows.sql('duckdb')}")
        delta = build_delta_from_rows(top, key, exp.to_table("signed", alias="r"))
        con.execute(f"CREATE OR REPLACE TABLE delta AS {delta.sql('duckdb')}")
        for index, values in enumerate(sets):
            moved = build_values_next_from_rows(
                key, values, exp.to_table(f"m{index}", alias="m"), exp.to_table("signed", alias="r")
            )
            con.execute(f"CREATE OR REPLACE TABLE v{index} AS {moved.sql('duckdb')}")
        extra = tuple(build_distinct_change(top, key, v, exp.to_table(f"v{i}", alias="v")) for i, v in enumerate(sets))
        fold_into_state(con, top, key, extra)
        pairs = ", ".join(f'"{n}"' for n in value_columns(key))
        for index in range(len(sets)):
            same = " AND ".join(
                [f'm{index}."{n}" IS NOT DISTINCT FROM v."{n}"' for n in key]
                + [f'm{index}."_sqlorch_x" = v."_sqlorch_x"']
            )
            con.execute(f"DELETE FROM m{index} WHERE EXISTS (SELECT 1 FROM v{index} v WHERE {same})")
            con.execute(f'INSERT INTO m{index} ({pairs}) SELECT {pairs} FROM v{index} WHERE "{ROWS}" > 0')
            # bounded: exactly the (group, value) pairs of the inputs, each with its rows
            fresh = build_values_query(top, key, sets[index]).sql("duckdb")
            assert _rows(con, f"SELECT {pairs} FROM m{index}") == _rows(con, fresh), f"{shape} values {index}"
        got = _rows(con, build_finalise(top, key, exp.to_table("state")).sql("duckdb"))
        want = _rows(con, SHAPES[shape])
        assert got == want, f"{shape} seed {seed} step {step}"
