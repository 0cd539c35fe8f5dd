"""Rows paired by key, NULL-safe: ``a IS NOT DISTINCT FROM b`` for each key column, so a
NULL key matches a NULL key where ``=`` would lose the row (NULL keys are one of the usual
ways incremental maintenance goes wrong, DESIGN.md). Every statement that pairs rows by key
(a MERGE's ON, a change log against a shadow copy, affected keys against recomputed rows)
builds its condition here.

On Postgres ``IS NOT DISTINCT FROM`` can be neither hashed nor merged, so every join on it
is a nested loop: one TPC-H step's key diff of 600,000 lineitems against their shadow ran
for minutes without ending (bench/RESULTS.md, ``tpch_postgres``). Postgres compares arrays
element by element with NULL equal to NULL, and array ``=`` hashes and merges, so a match
asked for as ``hashable`` is spelled ``ARRAY[a] = ARRAY[b]`` there: the same truth as ``IS
NOT DISTINCT FROM`` for two values of one type, and an error ("operator does not exist:
double precision[] = numeric[]") for two types. Only the change capture asks for it: it
pairs a source's columns with its own shadow copy's, which have the source's types. A
model's stored columns and their recomputed values may differ in type (a stored DOUBLE
against a recomputed NUMERIC), so the rewrites keep ``IS NOT DISTINCT FROM``. A pair with a
constant side keeps it too: an untyped literal's array would not compare. The spelling is
sqlglot's Postgres generator's, so ``plan`` shows exactly what ``build`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.generator import Generator

HASHABLE = "sqlorch_hashable_key_match"


def _postgres_null_safe_eq(generator: Generator, node: exp.NullSafeEQ) -> str:
    if node.meta.get(HASHABLE):
        arrays = exp.EQ(
            this=exp.Array(expressions=[node.this.copy()]), expression=exp.Array(expressions=[node.expression.copy()])
        )
        return generator.sql(arrays)
    return generator.binary(node, "IS NOT DISTINCT FROM")


Postgres.Generator.TRANSFORMS[exp.NullSafeEQ] = _postgres_null_safe_eq


def _pair(left: exp.Expr, right: exp.Expr, hashable: bool) -> exp.NullSafeEQ:
    node = exp.NullSafeEQ(this=left, expression=right)
    if hashable and not any(isinstance(side, (exp.Literal, exp.Null, exp.Boolean)) for side in (left, right)):
        node.meta[HASHABLE] = True
    return node


def null_safe_equal(pairs: Iterable[tuple[exp.Expr, exp.Expr]], hashable: bool = False) -> exp.Expr:
    """``a1 IS NOT DISTINCT FROM b1 AND ...``; TRUE for no pairs (a one-row aggregate's
    empty key matches its one row). ``hashable``: each pair's sides have one type (above)."""
    conditions = [_pair(left, right, hashable) for left, right in pairs]
    return exp.and_(*conditions, copy=False) if conditions else exp.true()  # the comparisons are new: no copy


def null_safe_match(
    left: str, right: str, names: Sequence[str], right_names: Sequence[str] | None = None, hashable: bool = False
) -> exp.Expr:
    """The columns ``names`` of the rows aliased ``left`` and ``right`` equal, NULL-safe
    (``right_names``: the same columns' names on the right, where they differ; ``hashable``:
    each column has one type on both sides, as a source's and its shadow's)."""
    return null_safe_equal(
        (
            (exp.column(name, table=left, quoted=True), exp.column(other, table=right, quoted=True))
            for name, other in zip(names, right_names if right_names is not None else names, strict=True)
        ),
        hashable,
    )
