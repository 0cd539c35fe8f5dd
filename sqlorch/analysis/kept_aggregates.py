"""Aggregated derived tables a model can keep as state: each a GROUP BY over its own
tables whose groups fold signed deltas (``signed_shape.py``), so that a change to those
tables is folded into its groups in ``_sqlorch`` and the model is recomputed from them
(``planning/rewrites/kept_aggregates.py``), reading the groups, not the tables.

TPC-H Q15 is the case in point: its CTE ``revenue`` (a SUM per supplier over a quarter of
lineitem) is read twice, once joined to the suppliers, once by ``MAX`` in a scalar subquery,
so a change to lineitem can change every output row, and no key or decorrelated form
follows it. Recomputed from ``revenue``'s 10,000 kept groups instead of 6M lineitems, the
model reads what the rest of the query reads plus the groups.

A derived table is kept when it is uncorrelated (it reads no column of an enclosing
query), has no subquery expression, groups by expressions it outputs, and has the signed
form with no DISTINCT aggregate. Copies with the same SQL (a CTE read twice, inlined) share
one state. The outermost such tables are taken: one inside a kept one is its business.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import DialectType
from sqlglot.schema import Schema

from sqlorch.analysis.signed_shape import NotSigned, aggregates_of, check_signed, group_names


@dataclass(frozen=True)
class KeptAggregate:
    """One aggregated derived table kept as group state: its query (qualified, inlined) and
    its group columns, the state's key."""

    query: exp.Select
    key: tuple[str, ...]


def _defined_aliases(select: exp.Select) -> set[str]:
    """Every table alias defined anywhere inside ``select``."""
    return {
        node.alias_or_name
        for node in select.find_all(exp.Table, exp.Subquery)
        if isinstance(node.parent, (exp.From, exp.Join))
    }


def _uncorrelated(select: exp.Select) -> bool:
    own = _defined_aliases(select)
    return all(column.table in own for column in select.find_all(exp.Column) if column.table)


def _subquery_expression(select: exp.Select) -> bool:
    """A subquery anywhere but in a FROM or JOIN."""
    for node in select.find_all(exp.Subquery, exp.Exists, exp.In):
        if isinstance(node, exp.In) and node.args.get("query") is None:
            continue
        if isinstance(node, exp.Subquery) and isinstance(node.parent, (exp.From, exp.Join)):
            continue
        return True
    return False


def _keepable(select: exp.Select, schema: Schema | None, dialect: DialectType) -> tuple[str, ...] | None:
    """The group columns of ``select`` where it can be kept as state, else None."""
    group = select.args.get("group")
    if group is None or group.args.get("all") or group.args.get("rollup") or group.args.get("cube"):
        return None
    key = group_names(select)
    if len(key) != len(group.expressions) or len(set(key)) != len(key):
        return None
    if not _uncorrelated(select) or _subquery_expression(select):
        return None
    try:
        check_signed(select, key, True, schema, dialect)
        if any(aggregate.distinct for aggregate in aggregates_of(select)):
            return None
    except NotSigned:
        return None
    return tuple(key)


def kept_aggregates(top: exp.Query, schema: Schema | None, dialect: DialectType) -> list[KeptAggregate]:
    """The distinct aggregated derived tables of ``top`` (CTE-inlined) kept as state, outermost
    first, in the order they are read."""
    found: list[KeptAggregate] = []
    taken: set[int] = set()
    for node in top.walk():
        if not isinstance(node, exp.Subquery) or not isinstance(node.parent, (exp.From, exp.Join)):
            continue
        if not isinstance(node.this, exp.Select) or any(id(a) in taken for a in _ancestors(node)):
            continue
        if any(k.query == node.this for k in found):
            taken.add(id(node))
            continue
        key = _keepable(node.this, schema, dialect)
        if key is not None:
            found.append(KeptAggregate(node.this.copy(), key))
            taken.add(id(node))
    return found


def _ancestors(node: exp.Expr) -> list[exp.Expr]:
    found = []
    parent = node.parent
    while parent is not None:
        found.append(parent)
        parent = parent.parent
    return found


def tables_read_only_inside(top: exp.Query, kept: list[KeptAggregate]) -> frozenset[tuple[str, str]]:
    """The (schema, name) of the tables ``top`` reads only inside its kept derived tables: a
    change to them is folded into the kept groups, and nothing else of the model reads them."""
    inside: set[tuple[str, str]] = set()
    outside: set[tuple[str, str]] = set()
    queries = [k.query for k in kept]
    for table in top.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            continue
        name = (table.db.lower(), table.name.lower())
        within = any(isinstance(a, exp.Select) and a in queries for a in _ancestors(table))
        (inside if within else outside).add(name)
    return frozenset(inside - outside)
