"""The conjuncts of a condition: what every rewrite that moves, keeps or drops filters works on."""

from __future__ import annotations

from sqlglot import exp


def conjuncts(condition: exp.Expr | None) -> list[exp.Expr]:
    """The terms of ``condition``'s top-level AND (itself when it is no AND; none for None)."""
    if condition is None:
        return []
    return list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
