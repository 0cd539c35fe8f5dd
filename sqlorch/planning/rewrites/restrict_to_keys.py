"""Restrict a model to the rows whose key is in a table of affected keys.

The filter goes into the WHERE of the top SELECT (of each UNION branch): the key columns
there are group keys, window partition keys or row-level expressions, so filtering input
rows by them keeps whole groups and partitions. Comparison is NULL-safe.
"""

from __future__ import annotations

from sqlglot import exp


def key_match(keys: exp.Table, pairs: list[tuple[str, exp.Expr]]) -> exp.Exists:
    """``EXISTS (SELECT 1 FROM keys k WHERE k.a IS NOT DISTINCT FROM <expr> AND ...)``."""
    alias = keys.alias_or_name
    conditions = [
        exp.NullSafeEQ(this=exp.column(name, table=alias, quoted=True), expression=expression.copy())
        for name, expression in pairs
    ]
    return exp.Exists(this=exp.select(exp.Literal.number(1)).from_(keys).where(exp.and_(*conditions)))


def restrict_to_keys(query: exp.Query, key: list[str], keys: exp.Table) -> exp.Query:
    query = query.copy()
    if not key:
        return query
    names = [s.alias_or_name.lower() for s in query.selects]
    _restrict(query, [(name, names.index(name)) for name in key], keys)
    return query


def _restrict(query: exp.Expr, positions: list[tuple[str, int]], keys: exp.Table) -> None:
    if isinstance(query, exp.Subquery):
        _restrict(query.this, positions, keys)
    elif isinstance(query, exp.Union):
        _restrict(query.left, positions, keys)
        _restrict(query.right, positions, keys)
    else:
        assert isinstance(query, exp.Select)
        pairs = [(name, query.selects[index].unalias()) for name, index in positions]
        query.where(key_match(keys, pairs), copy=False)
