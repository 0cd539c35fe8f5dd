"""Restrict a model to the rows whose key is in a table of affected keys.

The key columns of the top SELECT are anchors (group keys, window partition keys or
row-level expressions), so filtering the rows that feed that SELECT by them keeps whole
groups and partitions. The filter is pushed down as far as the key travels unchanged:
from a SELECT into the derived table or single-use CTE its key columns come from, as long
as they are anchors there too and that source is not on the nullable side of an outer
join. That is what lets DuckDB recompute the window of 5% of the users by reading only
their rows, instead of computing every partition and discarding 95% of them at the top.
Comparison is NULL-safe.
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.analysis.keys import NoKey, anchors
from sqlorch.planning.key_match import null_safe_equal


def key_match(keys: exp.Table, pairs: list[tuple[str, exp.Expr]]) -> exp.Exists:
    """``EXISTS (SELECT 1 FROM keys k WHERE k.a IS NOT DISTINCT FROM <expr> AND ...)``."""
    alias = keys.alias_or_name
    match = null_safe_equal(
        ((exp.column(name, table=alias, quoted=True), expression.copy()) for name, expression in pairs), any_types=True
    )
    return exp.Exists(this=exp.select(exp.Literal.number(1)).from_(keys, copy=False).where(match, copy=False))


def restrict_to_keys(query: exp.Query, key: list[str], keys: exp.Table) -> exp.Query:
    query = query.copy()
    if not key:
        return query
    names = output_names(query)
    _restrict(query, [names.index(name) for name in key], key, keys, _single_use_ctes(query))
    return query


def output_names(query: exp.Expr) -> list[str]:
    return [s.alias_or_name.lower() for s in query.selects] if isinstance(query, exp.Query) else []


def _restrict(
    query: exp.Expr, positions: list[int], key: list[str], keys: exp.Table, ctes: dict[str, exp.Query]
) -> None:
    if isinstance(query, exp.Subquery):
        _restrict(query.this, positions, key, keys, ctes)
    elif isinstance(query, exp.Union):
        _restrict(query.left, positions, key, keys, ctes)
        _restrict(query.right, positions, key, keys, ctes)
    else:
        assert isinstance(query, exp.Select)
        expressions = [query.selects[index].unalias() for index in positions]
        inner = _pushdown_target(query, expressions, ctes)
        if inner is not None:
            _restrict(inner[0], inner[1], key, keys, ctes)
        else:
            query.where(key_match(keys, list(zip(key, expressions, strict=True))), copy=False)


def _single_use_ctes(query: exp.Query) -> dict[str, exp.Query]:
    """CTEs read exactly once, by a name no other CTE shares: a filter pushed into one of
    them changes no other reader."""
    defined: dict[str, list[exp.Query]] = {}
    for cte in query.find_all(exp.CTE):
        defined.setdefault(cte.alias_or_name.lower(), []).append(cte.this)
    reads: dict[str, int] = {}
    for table in query.find_all(exp.Table):
        if not table.db and table.name.lower() in defined:
            reads[table.name.lower()] = reads.get(table.name.lower(), 0) + 1
    return {name: bodies[0] for name, bodies in defined.items() if len(bodies) == 1 and reads.get(name) == 1}


def _pushdown_target(
    select: exp.Select, expressions: list[exp.Expr], ctes: dict[str, exp.Query]
) -> tuple[exp.Query, list[int]] | None:
    """The source query the key columns all come from, and their positions in it, when
    filtering that source's rows is the same as filtering this SELECT's rows."""
    columns = [e for e in expressions if isinstance(e, exp.Column) and e.table]
    if len(columns) != len(expressions):
        return None
    aliases = {c.table.lower() for c in columns}
    if len(aliases) != 1 or select.args.get("laterals") or select.args.get("pivots"):
        return None
    alias = aliases.pop()
    joins = select.args.get("joins") or []
    from_ = select.args.get("from_") or select.args.get("from")
    right_joined = any(j.side in ("RIGHT", "FULL") for j in joins)
    candidates: list[tuple[exp.Expr, bool]] = [(from_.this, right_joined)] if from_ else []
    candidates += [(j.this, j.side in ("LEFT", "RIGHT", "FULL")) for j in joins]
    for source, nullable in candidates:
        if source.alias_or_name.lower() != alias:
            continue
        if nullable:
            return None  # filtering a nullable side turns dropped rows into NULL-extended ones
        if isinstance(source, exp.Subquery) and isinstance(source.this, exp.Query):
            body: exp.Query = source.this
        elif isinstance(source, exp.Table) and not source.db and source.name.lower() in ctes:
            body = ctes[source.name.lower()]
        else:
            return None  # a base table: the filter belongs in this SELECT
        names = output_names(body)  # a UNION's are its first branch's
        wanted = [c.name.lower() for c in columns]
        if not all(name in names for name in wanted):
            return None
        positions = [names.index(name) for name in wanted]
        try:
            anchored = anchors(body)
        except NoKey:
            return None
        if not all(anchored[p] for p in positions):
            return None
        return body, positions
    return None
