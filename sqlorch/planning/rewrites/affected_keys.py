"""Build the query that lists the output keys an input change can affect.

For every occurrence of a changed input, the model is evaluated with that occurrence
replaced by the changed rows (old and new images) and every other changed input by all
its rows past and present (current rows plus old images). Then:

- a LEFT JOIN whose nullable side holds the substituted occurrence becomes inner: rows
  that match no changed row are not affected;
- for each such LEFT JOIN a second branch evaluates the NULL-extended rows instead: the
  preserved rows that match a changed row, with the nullable side empty. These are the
  rows that gained or lost their match, whose old or new key was computed from NULLs;
- HAVING, QUALIFY and filters on non-anchor values (aggregates, window values) are
  dropped: they were computed over partial data, and dropping a filter only adds keys;
- the anchors the key is made of are projected, DISTINCT.

Over-approximation is safe (more keys recomputed); under-approximation would be a bug.
RIGHT and FULL joins are not rewritten (the key analysis sends them to a full rebuild).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.analysis.conditions import conjuncts
from sqlorch.analysis.inline_ctes import alias_identifier
from sqlorch.analysis.keys import anchors, own_nodes
from sqlorch.execution.statements import union_all
from sqlorch.planning.rewrites.substitute_occurrence import count_occurrences, substitute_occurrence


def _left_join_crossings(node: exp.Expr) -> list[exp.Join]:
    """The LEFT JOINs, innermost first, whose nullable side contains ``node``."""
    crossings: list[exp.Join] = []
    current: exp.Expr | None = node
    while current is not None:
        parent = current.parent
        if isinstance(parent, exp.Join) and parent.this is current and parent.side == "LEFT":
            crossings.append(parent)
        current = parent
    return crossings


def _null_extended(join: exp.Join) -> None:
    """Keep ``join``'s preserved rows that match the nullable side, with that side NULL."""
    select = join.parent
    assert isinstance(select, exp.Select)
    nullable = join.this
    alias = alias_identifier(nullable)
    matched = nullable.copy()
    on = join.args.get("on")
    exists = exp.Exists(this=exp.select(exp.Literal.number(1)).from_(matched).where(on.copy() if on else exp.true()))
    empty = exp.select(exp.Star()).from_(nullable.copy()).where(exp.false())
    nullable.replace(exp.Subquery(this=empty, alias=exp.TableAlias(this=alias)))
    select.where(exists, copy=False)


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
        conditions = conjuncts(where.this)
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
) -> exp.Query:
    def substituted(index: int) -> tuple[exp.Query, exp.Expr]:
        return substitute_occurrence(inlined, index, is_changed, changed_rows, all_rows)

    branches: list[exp.Query] = []
    for index in range(count_occurrences(inlined, is_changed)):
        copy, target = substituted(index)
        crossings = _left_join_crossings(target)
        variants = [copy]
        for level in range(len(crossings)):
            variant, variant_target = substituted(index)
            joins = _left_join_crossings(variant_target)
            for inner in joins[:level]:
                inner.set("side", None)
            _null_extended(joins[level])
            for outer in joins[level + 1 :]:
                outer.set("side", None)
            variants.append(variant)
        for join in crossings:
            join.set("side", None)
        for query in variants:
            _drop_unstable_filters(query)
            projected = [exp.column(name, table="q", quoted=True) for name in key]
            # each variant is a copy made for this query alone: wrapped, not copied again
            branches.append(exp.select(*projected).from_(query.subquery("q", copy=False), copy=False))
    union = union_all(branches)
    keys = exp.select(*[exp.column(n, quoted=True) for n in key]).distinct()
    return keys.from_(union.subquery("k", copy=False), copy=False)
