"""Key filters on a delta branch's other sides (planning/rewrites/signed_key_filters.py): which
items are cut down to the rows joining the change, and on which columns."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

from sqlorch.planning.rewrites.signed_key_filters import KEYS_ALIAS, filter_by_change

CHANGE = "SELECT 1 AS order_id, 2 AS sku, 1 AS _sqlorch_w"


def _filtered(sql: str, changed: str) -> tuple[exp.Select, dict[str, list[str]]]:
    """The query with ``changed`` replaced by a change and filtered; per wrapped item, the
    columns of its filter (item column = change column)."""
    select = sqlglot.parse_one(sql, read="duckdb")
    assert isinstance(select, exp.Select)
    table = next(t for t in select.find_all(exp.Table) if t.alias_or_name == changed)
    delta = exp.Subquery(this=sqlglot.parse_one(CHANGE), alias=exp.TableAlias(this=exp.to_identifier(changed)))
    table.replace(delta)
    weighted = {id(delta)}
    filter_by_change(select, delta, weighted)
    found: dict[str, list[str]] = {}
    for item in select.find_all(exp.Subquery):
        exists = item.this.find(exp.Exists) if isinstance(item.this, exp.Select) else None
        if item is delta or exists is None:
            continue
        found[item.alias_or_name] = sorted(f"{eq.this.sql()} = {eq.expression.sql()}" for eq in exists.find_all(exp.EQ))
    return select, found


def test_items_joined_to_the_change_by_equality_are_filtered_on_every_join_column() -> None:
    _, found = _filtered(
        "SELECT s.family, count(*) FROM raw.items AS i, raw.skus AS s, raw.lines AS l "
        "WHERE i.sku = s.sku AND l.order_id = i.order_id AND l.sku = i.sku AND s.family <> 'x' GROUP BY 1",
        "i",
    )
    assert found == {
        "s": [f's.sku = "{KEYS_ALIAS}".sku'],
        "l": [f'l.order_id = "{KEYS_ALIAS}".order_id', f'l.sku = "{KEYS_ALIAS}".sku'],
    }


def test_only_direct_inner_equalities_filter() -> None:
    _, found = _filtered(
        "SELECT count(*) FROM raw.items AS i JOIN raw.skus AS s ON s.sku = i.sku "
        "LEFT JOIN raw.notes AS n ON n.sku = i.sku JOIN raw.families AS f ON f.family = s.family "
        "JOIN raw.prices AS p ON p.sku > i.sku",
        "i",
    )
    assert found == {"s": [f's.sku = "{KEYS_ALIAS}".sku']}  # not the LEFT JOIN, the second hop, an inequality


def test_an_earlier_changed_sides_rows_before_the_change_are_left_whole() -> None:
    select = sqlglot.parse_one(
        "SELECT count(*) FROM (SELECT 1 AS sku, 1 AS _sqlorch_w) AS s JOIN raw.items AS i ON s.sku = i.sku",
        read="duckdb",
    )
    assert isinstance(select, exp.Select)
    earlier = next(select.find_all(exp.Subquery))
    table = next(t for t in select.find_all(exp.Table) if t.alias_or_name == "i")
    delta = exp.Subquery(this=sqlglot.parse_one(CHANGE), alias=exp.TableAlias(this=exp.to_identifier("i")))
    table.replace(delta)
    weighted = {id(delta), id(earlier)}
    filter_by_change(select, delta, weighted)
    assert select.args["from_"].this is earlier and not earlier.find(exp.Exists)
    assert weighted == {id(delta), id(earlier)}


def test_equalities_carry_through_other_items_columns() -> None:
    _, found = _filtered(
        "SELECT count(*) FROM raw.items AS i, raw.orders AS o, (SELECT x.id FROM raw.big AS x GROUP BY x.id) AS d "
        "WHERE o.id = i.order_id AND d.id = o.id",
        "i",
    )
    assert found == {"o": [f'o.id = "{KEYS_ALIAS}".order_id'], "d": [f'x.id = "{KEYS_ALIAS}".order_id']}
