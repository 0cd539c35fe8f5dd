"""Partitions (analysis/partition.py): which tables a model reads through one key, so that its
rows of a touched key depend only on those tables' rows with that key. The shapes that anchor a
table (joins, correlations by equality beside ``<>``, NOT EXISTS, IN's probe, a LEFT JOIN's ON,
a derived table's group key) and the ones that must not (an uncorrelated subquery, NOT IN, an
IN under OR, a subquery whose alias shadows the outer one, IN over a LIMIT)."""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from sqlorch.analysis.keys import analyse_keys
from sqlorch.analysis.partition import own_conjuncts, partition_tables

SCHEMA = {
    "raw": {
        "o": {"id": "INT", "cust": "INT", "grp": "VARCHAR"},
        "l": {"oid": "INT", "supp": "INT", "qty": "INT"},
        "c": {"id": "INT", "seg": "VARCHAR"},
    }
}


def _tables(sql: str) -> dict[str, set[str]]:
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
    assert isinstance(query, exp.Query)
    return {key: {name for _, name in tables} for key, tables in partition_tables(query)}


ANCHORED = [
    # TPC-H Q21: EXISTS and NOT EXISTS correlated by the order key beside a <>
    (
        "SELECT o.grp, count(*) AS n FROM raw.o JOIN raw.l AS l1 ON l1.oid = o.id "
        "WHERE EXISTS (SELECT 1 FROM raw.l AS l2 WHERE l2.oid = l1.oid AND l2.supp <> l1.supp) "
        "AND NOT EXISTS (SELECT 1 FROM raw.l AS l3 WHERE l3.oid = l1.oid AND l3.supp <> l1.supp AND l3.qty > 3) "
        "GROUP BY o.grp",
        {"o", "l"},
    ),
    # TPC-H Q13: a LEFT JOIN counted in a derived table grouped by its key
    (
        "SELECT t.n, count(*) AS k FROM (SELECT c.id, count(o.id) AS n FROM raw.c LEFT JOIN raw.o "
        "ON o.cust = c.id AND o.grp <> 'x' GROUP BY c.id) AS t GROUP BY t.n",
        {"c", "o"},
    ),
    # TPC-H Q22: NOT EXISTS in a derived table; c also read uncorrelated, so only o follows
    (
        "SELECT t.seg, count(*) AS k FROM (SELECT c.seg FROM raw.c WHERE c.id > (SELECT avg(x.id) FROM raw.c AS x) "
        "AND NOT EXISTS (SELECT 1 FROM raw.o WHERE o.cust = c.id)) AS t GROUP BY t.seg",
        {"o"},
    ),
    # TPC-H Q20: IN's probe is an equality, down to a subquery inside the subquery
    (
        "SELECT c.seg, count(*) AS k FROM raw.c WHERE c.id IN (SELECT o.cust FROM raw.o WHERE o.id > "
        "(SELECT sum(l.qty) FROM raw.l WHERE l.oid = o.id AND l.supp = o.cust)) GROUP BY c.seg",
        {"c", "o", "l"},
    ),
]


@pytest.mark.parametrize(("sql", "tables"), ANCHORED)
def test_a_partition_anchors_every_table_read_through_its_key(sql: str, tables: set[str]) -> None:
    assert tables in list(_tables(sql).values()), _tables(sql)


NOT_ANCHORED = [
    # NOT IN: a NULL anywhere in the subquery rejects every row, whatever its key
    ("SELECT o.grp, count(*) AS n FROM raw.o WHERE o.cust NOT IN (SELECT c.id FROM raw.c) GROUP BY o.grp", "c"),
    # IN under OR: its NULL (no match, a NULL in the set) differs from FALSE there
    (
        "SELECT o.grp, count(*) AS n FROM raw.o WHERE o.grp = 'a' OR o.cust IN (SELECT c.id FROM raw.c) GROUP BY o.grp",
        "c",
    ),
    # IN over a LIMIT: which rows are in the set depends on the other keys' rows
    ("SELECT o.grp, count(*) AS n FROM raw.o WHERE o.cust IN (SELECT c.id FROM raw.c LIMIT 3) GROUP BY o.grp", "c"),
    # correlated by <> only
    (
        "SELECT o.grp, count(*) AS n FROM raw.o WHERE EXISTS (SELECT 1 FROM raw.l WHERE l.oid <> o.id) GROUP BY o.grp",
        "l",
    ),
    # the subquery's own alias o shadows the outer o: o.id = o.cust is no correlation
    (
        "SELECT o.grp, count(*) AS n FROM raw.o WHERE EXISTS (SELECT 1 FROM raw.o AS o WHERE o.id = o.cust) "
        "GROUP BY o.grp",
        "o",
    ),
]


@pytest.mark.parametrize(("sql", "table"), NOT_ANCHORED)
def test_a_table_read_other_than_through_the_key_is_not_anchored(sql: str, table: str) -> None:
    tables = _tables(sql)
    assert all(table not in anchored for anchored in tables.values()), tables


def test_a_grouped_derived_table_is_partitioned_by_its_group_key_only() -> None:
    """Its filter acts before the grouping: on any other column it would cut groups in part."""
    tables = _tables(
        "SELECT t.q, count(*) AS n FROM (SELECT l.supp, sum(l.qty) AS q FROM raw.l WHERE l.oid > 0 GROUP BY l.supp) "
        "AS t GROUP BY t.q"
    )
    assert tables == {'"l"."supp"': {"l"}}


def test_a_left_joins_nullable_side_is_no_key() -> None:
    """Keyed by o.cust, a customer's NULL-extended row (K NULL) would be in neither branch,
    though deleting its last order makes it: o is followed through c.id only."""
    tables = _tables("SELECT c.seg, count(o.id) AS n FROM raw.c LEFT JOIN raw.o ON o.cust = c.id GROUP BY c.seg")
    assert all("o" not in anchored or key.startswith('"c"') for key, anchored in tables.items()), tables
    assert {"c", "o"} in list(tables.values()), tables


def test_the_rows_before_the_change_keep_the_columns_the_model_reads() -> None:
    """EXISTS (SELECT * ..) and COUNT(*) read no column; a * that could is all of them."""
    from sqlorch.planning.rewrites.signed_partition import read_columns

    def read(sql: str) -> list[str]:
        query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
        assert isinstance(query, exp.Select)
        tables = [t for t in query.find_all(exp.Table) if t.name == "l"]
        return read_columns(query, tables, ["oid", "supp", "qty"])

    exists = (
        "SELECT o.grp, count(*) AS n FROM raw.o WHERE EXISTS (SELECT * FROM raw.l WHERE l.oid = o.id) GROUP BY o.grp"
    )
    assert read(exists) == ["oid"]
    assert read("SELECT t.oid, count(*) AS n FROM (SELECT * FROM raw.l) AS t GROUP BY t.oid") == ["oid", "supp", "qty"]


ROW_LEVEL = (
    "SELECT c.id, c.seg FROM raw.c WHERE c.id IN (SELECT o.cust FROM raw.o "
    "WHERE o.id * 3 > (SELECT sum(x.id) FROM raw.o AS x WHERE x.cust = o.cust AND x.id <> o.id))"
)


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        # TPC-H Q20's shape: its FROM table and the table its nested IN reads, through c.id
        (ROW_LEVEL, {"c", "o"}),
        # a window of its own (here in QUALIFY): a row depends on its window's other rows
        (f"{ROW_LEVEL} QUALIFY row_number() OVER (PARTITION BY c.seg ORDER BY c.id) = 1", None),
        # grouped: the aggregated partitioned form's (``KeyAnalysis.partitions``), not this one
        (ROW_LEVEL.replace("SELECT c.id, c.seg", "SELECT c.seg, count(*) AS n") + " GROUP BY c.seg", None),
    ],
)
def test_a_row_level_model_is_partitioned_by_its_rows_key(sql: str, tables: set[str] | None) -> None:
    schema = MappingSchema(SCHEMA, dialect="duckdb")
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=schema, dialect="duckdb")
    assert isinstance(query, exp.Query)
    found = [{name for _, name in anchored} for _, anchored in analyse_keys(query, (), schema).row_partitions]
    assert (tables in found) if tables else not found, found


def test_a_tables_own_conditions_are_those_of_its_columns_alone() -> None:
    """The conditions that decide which of a table's rows can matter (``own_conjuncts``):
    its WHERE's and inner ON's conjuncts on its own columns; not a correlation, not one with
    a subquery, none on a LEFT JOIN's nullable side (a row dropped there NULL-extends its
    partner, which the WHERE may keep)."""
    sql = (
        "SELECT c.id FROM raw.c LEFT JOIN raw.o AS n ON n.cust = c.id AND n.grp = 'a' "
        "WHERE n.id IS NULL AND c.id IN (SELECT l.supp FROM raw.l "
        "WHERE l.qty > 3 AND l.oid = c.id AND l.qty IN (1, 2) AND l.supp IN (SELECT o.id FROM raw.o))"
    )
    query = qualify(sqlglot.parse_one(sql, read="duckdb"), schema=SCHEMA, dialect="duckdb")
    found = {t.alias_or_name: [c.sql() for c in own_conjuncts(t)] for t in query.find_all(exp.Table)}
    assert found["l"] == ['"l"."qty" > 3', '"l"."qty" IN (1, 2)'], found
    assert found["n"] == [] and found["c"] == [], found
