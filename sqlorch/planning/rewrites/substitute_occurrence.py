"""Replace the occurrences of changed inputs in a model with subqueries over their changes.

The ``index``-th occurrence gets ``changed_rows``; every other occurrence of a changed
input gets ``all_rows``. Used for the affected-keys query and for insert-only deltas.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.analysis.inline_ctes import alias_identifier

RowsFor = Callable[[exp.Table], exp.Query]


def substitute_occurrence(
    inlined: exp.Query,
    index: int,
    is_changed: Callable[[exp.Table], bool],
    changed_rows: RowsFor,
    all_rows: RowsFor,
) -> tuple[exp.Query, exp.Subquery]:
    """A copy of ``inlined`` with the substitutions made, and the substituted node."""
    copy = inlined.copy()
    tables = [t for t in copy.find_all(exp.Table) if is_changed(t)]
    target: exp.Subquery | None = None
    for position, table in enumerate(tables):
        rows = changed_rows(table) if position == index else all_rows(table)
        replacement = exp.Subquery(this=rows, alias=exp.TableAlias(this=alias_identifier(table)))
        table.replace(replacement)
        if position == index:
            target = replacement
    assert target is not None, "no changed occurrence at that index"
    return copy, target


def count_occurrences(inlined: exp.Query, is_changed: Callable[[exp.Table], bool]) -> int:
    return sum(1 for table in inlined.find_all(exp.Table) if is_changed(table))


def keep_only_branches_with(query: exp.Query, node: exp.Expr) -> exp.Query:
    """Empty every UNION branch that does not contain ``node``: over appended rows of one
    input, a branch that does not read it contributes no new rows."""
    current: exp.Expr = node
    while current.parent is not None:
        parent = current.parent
        if isinstance(parent, exp.SetOperation):
            for side in ("this", "expression"):
                branch = parent.args.get(side)
                if branch is not None and branch is not current:
                    empty = exp.select(exp.Star()).from_(branch.copy().subquery("_unchanged")).where(exp.false())
                    branch.replace(empty)
        current = parent
    return query
