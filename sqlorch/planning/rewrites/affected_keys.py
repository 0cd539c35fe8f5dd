"""Build the query that lists the output keys an input change can affect.

For every occurrence of a changed input, the model is evaluated with that occurrence
replaced by the changed rows (old and new images) and every other changed input by all
its rows past and present (current rows plus old images). Then:

- an outer join whose nullable side holds the substituted occurrence becomes inner: rows
  that match no changed row are not affected;
- HAVING, QUALIFY and filters on non-anchor values (aggregates, window values) are
  dropped: they were computed over partial data, and dropping a filter only adds keys;
- the anchors the key is made of are projected, DISTINCT.

Over-approximation is safe (more keys recomputed); under-approximation would be a bug.
With an outer join and several changed inputs, each key is also emitted with subsets of
its outer-joined columns NULL, covering rows that lost their match when the other side changed too.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations

from sqlglot import exp

from sqlorch.analysis.keys import anchors, own_nodes

Resolver = Callable[[exp.Table], object | None]


def _innerize(node: exp.Expr) -> None:
    """Make every outer join that could null out ``node``'s rows an inner join."""
    current: exp.Expr | None = node
    while current is not None:
        parent = current.parent
        if isinstance(parent, exp.Join) and parent.this is current and parent.side == "LEFT":
            parent.set("side", None)
        if isinstance(parent, (exp.From, exp.Join)) and isinstance(parent.parent, exp.Select):
            select = parent.parent
            joins = select.args.get("joins") or []
            position = -1 if isinstance(parent, exp.From) else joins.index(parent)
            for join in joins[position + 1 :]:
                if join.side == "RIGHT":
                    join.set("side", None)
        current = parent


def _drop_unstable_filters(query: exp.Expr) -> None:
    for select in list(query.find_all(exp.Select)):
        select.set("having", None)
        select.set("qualify", None)
        where = select.args.get("where")
        if where is None:
            continue
        unstable: set[tuple[str, str]] = set()
        from_ = select.args.get("from_")
        items = ([from_.this] if from_ else []) + [j.this for j in select.args.get("joins") or []]
        for item in items:
            if isinstance(item, exp.Subquery):
                names = [s.alias_or_name.lower() for s in item.this.selects]
                for name, ok in zip(names, anchors(item.this), strict=False):
                    if not ok:
                        unstable.add((item.alias_or_name.lower(), name))
        conditions = list(where.this.flatten()) if isinstance(where.this, exp.And) else [where.this]
        kept = [c for c in conditions if not _reads_any(c, unstable)]
        select.set("where", exp.Where(this=exp.and_(*kept)) if kept else None)


def _reads_any(condition: exp.Expr, columns: set[tuple[str, str]]) -> bool:
    return any(isinstance(n, exp.Column) and (n.table.lower(), n.name.lower()) in columns for n in own_nodes(condition))


def build_affected_keys(
    inlined: exp.Query,
    key: list[str],
    is_changed: Callable[[exp.Table], bool],
    changed_rows: Callable[[exp.Table], exp.Query],
    all_rows: Callable[[exp.Table], exp.Query],
    nullable: list[str],
) -> exp.Query:
    occurrences = [t for t in inlined.find_all(exp.Table) if is_changed(t)]
    branches: list[exp.Query] = []
    for index in range(len(occurrences)):
        copy = inlined.copy()
        tables = [t for t in copy.find_all(exp.Table) if is_changed(t)]
        target: exp.Expr | None = None
        for position, table in enumerate(tables):
            rows = changed_rows(table) if position == index else all_rows(table)
            alias = exp.TableAlias(this=exp.to_identifier(table.alias_or_name))
            replacement = exp.Subquery(this=rows, alias=alias)
            table.replace(replacement)
            if position == index:
                target = replacement
        assert target is not None
        _innerize(target)
        _drop_unstable_filters(copy)
        projected = [exp.column(name, table="q", quoted=True) for name in key]
        branches.append(exp.select(*projected).from_(copy.subquery("q")))
    union: exp.Query = branches[0]
    for branch in branches[1:]:
        union = exp.union(union, branch, distinct=False)
    keys = exp.select(*[exp.column(n, quoted=True) for n in key]).distinct().from_(union.subquery("k"))
    if not nullable:
        return keys
    variants: exp.Query = keys
    for size in range(1, len(nullable) + 1):
        for nulled in combinations(nullable, size):
            columns = [
                exp.alias_(exp.Null(), name, quoted=True) if name in nulled else exp.column(name, quoted=True)
                for name in key
            ]
            variants = exp.union(variants, exp.select(*columns).from_(keys.subquery("v")), distinct=False)
    return exp.select(*[exp.column(n, quoted=True) for n in key]).distinct().from_(variants.subquery("nv"))
