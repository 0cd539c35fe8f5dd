"""Rows paired by key, NULL-safe: ``a IS NOT DISTINCT FROM b`` for each key column, so a
NULL key matches a NULL key where ``=`` would lose the row (NULL keys are one of the usual
ways incremental maintenance goes wrong, DESIGN.md). Every statement that pairs rows by key
(a MERGE's ON, a change log against a shadow copy, affected keys against recomputed rows)
builds its condition here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlglot import exp


def null_safe_equal(pairs: Iterable[tuple[exp.Expr, exp.Expr]]) -> exp.Expr:
    """``a1 IS NOT DISTINCT FROM b1 AND ...``; TRUE for no pairs (a one-row aggregate's
    empty key matches its one row)."""
    conditions = [exp.NullSafeEQ(this=left, expression=right) for left, right in pairs]
    return exp.and_(*conditions, copy=False) if conditions else exp.true()  # the comparisons are new: no copy


def null_safe_match(left: str, right: str, names: Sequence[str], right_names: Sequence[str] | None = None) -> exp.Expr:
    """The columns ``names`` of the rows aliased ``left`` and ``right`` equal, NULL-safe
    (``right_names``: the same columns' names on the right, where they differ)."""
    return null_safe_equal(
        (exp.column(name, table=left, quoted=True), exp.column(other, table=right, quoted=True))
        for name, other in zip(names, right_names if right_names is not None else names, strict=True)
    )
