"""Which aggregated derived tables a model keeps as group state (analysis/kept_aggregates.py),
the tables a change to which it folds into them, and the model read from the kept groups:
its SQL with each such table replaced by its finalised groups (SQL in, SQL out)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from sqlorch.analysis.keys import analyse_keys
from sqlorch.planning.rewrites.kept_aggregates import _with_groups

SCHEMA = {
    "raw": {
        "items": {"id": "INT", "sku": "VARCHAR", "qty": "INT", "price": "DECIMAL(12,2)", "weight": "DOUBLE"},
        "skus": {"sku": "VARCHAR", "family": "VARCHAR"},
    }
}
TOTALS = "SELECT sku, SUM(qty * price) AS total FROM raw.items GROUP BY sku"
MAXIMUM = "t.total = (SELECT MAX(total) FROM t)"
Q15 = f"WITH t AS ({TOTALS}) SELECT s.sku, s.family, t.total FROM raw.skus s, t WHERE s.sku = t.sku AND {MAXIMUM}"


def analysed(sql: str):
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
    assert isinstance(query, exp.Query)
    return analyse_keys(query, (), MappingSchema(SCHEMA, dialect="duckdb"), "duckdb")


def test_a_cte_read_twice_is_kept_once() -> None:
    keys = analysed(Q15)
    assert [k.key for k in keys.kept] == [("sku",)]
    assert keys.kept_tables == {("raw", "items")}  # raw.skus is read whole


@pytest.mark.parametrize(
    "cte",
    [
        "SELECT sku, SUM(weight) AS total FROM raw.items GROUP BY sku",  # a float sum: order-dependent
        "SELECT sku, COUNT(DISTINCT qty) AS total FROM raw.items GROUP BY sku",  # no per-value state here
        "SELECT sku, SUM(qty) AS total FROM raw.items GROUP BY sku, id",  # a group it does not output
        "SELECT sku, string_agg(sku) AS total FROM raw.items GROUP BY sku",  # no signed form
        "SELECT sku, SUM(qty) AS total FROM raw.items WHERE id IN (SELECT id FROM raw.items) GROUP BY sku",
        "SELECT sku, SUM(qty) AS total FROM raw.items",  # no GROUP BY: one row, nothing to keep
    ],
)
def test_what_is_not_kept(cte: str) -> None:
    sql = f"WITH t AS ({cte}) SELECT t.sku, t.total FROM t WHERE {MAXIMUM}"
    assert analysed(sql).kept == []


def test_a_correlated_derived_table_is_not_kept() -> None:
    sql = (
        "SELECT s.sku FROM raw.skus s WHERE 1 < (SELECT MAX(t.total) FROM "
        "(SELECT i.sku, SUM(i.qty) AS total FROM raw.items i WHERE i.sku = s.sku GROUP BY i.sku) t)"
    )
    assert analysed(sql).kept == []


def test_a_table_read_outside_too_is_not_folded_alone() -> None:
    """raw.items is also read whole by the outer query: its change keeps the groups up to date,
    but the strategy saves nothing on it (``kept_tables``)."""
    sql = f"WITH t AS ({TOTALS}) SELECT i.id, t.total FROM raw.items i, t WHERE i.sku = t.sku AND {MAXIMUM}"
    keys = analysed(sql)
    assert len(keys.kept) == 1 and keys.kept_tables == frozenset()


def test_the_model_reads_the_finalised_groups() -> None:
    keys = analysed(Q15)
    assert keys.inlined is not None
    read = _with_groups(keys.inlined, keys.kept, [exp.select("*").from_("kept")])
    assert read.sql("duckdb") == (
        'SELECT "s"."sku" AS "sku", "s"."family" AS "family", "t"."total" AS "total" '
        'FROM "raw"."skus" AS "s", (SELECT "sku", CASE WHEN "_sqlorch_a0_n" > 0 THEN "_sqlorch_a0_s" END AS "total" '
        'FROM (SELECT * FROM kept) AS g WHERE "_sqlorch_rows" > 0) AS "t" '
        'WHERE "s"."sku" = "t"."sku" AND "t"."total" = (SELECT MAX("t"."total") AS "_col_0" FROM '
        '(SELECT "sku", CASE WHEN "_sqlorch_a0_n" > 0 THEN "_sqlorch_a0_s" END AS "total" '
        'FROM (SELECT * FROM kept) AS g WHERE "_sqlorch_rows" > 0) AS "t")'
    )
