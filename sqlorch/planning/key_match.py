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
double precision[] = numeric[]") for two types. The change capture asks for it as
``hashable``: it pairs a source's columns with its own shadow copy's, which have the
source's types.

The rewrites pair a key table with a model's stored rows, a source or recomputed rows,
whose types may differ (a stored DOUBLE against a recomputed NUMERIC, INTEGER against
BIGINT, VARCHAR(n) against TEXT) and are not known at plan time for every expression, so
they ask for ``any_types``: each side's array holds its value cast to the two sides'
common type, which Postgres works out itself from a CASE of both, ``ARRAY[CASE WHEN TRUE
THEN a ELSE b END] = ARRAY[CASE WHEN FALSE THEN a ELSE b END]``. The planner folds each CASE
to its one live branch before it looks for join clauses (``eval_const_expressions``), so
the clause reads one side each and hashes and merges like the capture's; the two CASEs list
the same branches in the same order, so their types agree. The common type is not always
the one ``=`` would compare in (a REAL against a NUMERIC: ``=`` compares DOUBLEs, the CASE
REALs, coarser), so ``a IS NOT DISTINCT FROM b`` follows as a check of the pairs the hash
found: the truth is exactly ``IS NOT DISTINCT FROM``'s wherever the common type's equality is
no finer than ``=``'s, which holds for every ordered pair of SMALLINT, INTEGER, BIGINT,
NUMERIC of any scale, REAL, DOUBLE, TEXT, VARCHAR(n), CHAR(n), BOOLEAN, DATE, TIMESTAMP and
TIMESTAMPTZ but one (tests/adapters/test_postgres_key_match.py): a CHAR(n) first against a
VARCHAR second, which
``=`` compares as CHAR (trailing blanks ignored) and the CASE as VARCHAR (kept), so ``'a'``
and ``'a '`` would not pair (among string types the CASE's first branch, the second side,
sets the type; the other orders are exact). Both sides of a rewrite's pair come from the
same expression, so a rewrite meets that only when a source column's type moved from
VARCHAR to CHAR(n) under a built model whose key it is.

A pair with a constant side keeps ``IS NOT DISTINCT FROM``: an untyped literal's array
would not compare. The spelling is sqlglot's Postgres generator's, so ``plan`` shows
exactly what ``build`` runs; the other targets' generators ignore the marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.generator import Generator

HASHABLE = "sqlorch_hashable_key_match"
SAME_TYPE, ANY_TYPES = "same type", "any types"  # the mark's values: the sides' types (above)


def _common_type_arrays(node: exp.NullSafeEQ) -> exp.Expr:
    """``ARRAY[a] = ARRAY[b]`` with both values in their common type, then the exact check."""
    left, right = node.this, node.expression

    def live(branch: exp.Boolean) -> exp.Array:
        return exp.Array(expressions=[exp.Case(ifs=[exp.If(this=branch, true=left.copy())], default=right.copy())])

    arrays = exp.EQ(this=live(exp.true()), expression=live(exp.false()))
    exact = exp.NullSafeEQ(this=left.copy(), expression=right.copy())  # unmarked: IS NOT DISTINCT FROM
    return exp.paren(exp.and_(arrays, exact, copy=False), copy=False)


def _postgres_null_safe_eq(generator: Generator, node: exp.NullSafeEQ) -> str:
    mark = node.meta.get(HASHABLE)
    if mark == SAME_TYPE:
        arrays = exp.EQ(
            this=exp.Array(expressions=[node.this.copy()]), expression=exp.Array(expressions=[node.expression.copy()])
        )
        return generator.sql(arrays)
    if mark == ANY_TYPES:
        return generator.sql(_common_type_arrays(node))
    return generator.binary(node, "IS NOT DISTINCT FROM")


Postgres.Generator.TRANSFORMS[exp.NullSafeEQ] = _postgres_null_safe_eq


def _pair(left: exp.Expr, right: exp.Expr, hashable: bool, any_types: bool) -> exp.NullSafeEQ:
    node = exp.NullSafeEQ(this=left, expression=right)
    if (hashable or any_types) and not any(
        isinstance(side, (exp.Literal, exp.Null, exp.Boolean)) for side in (left, right)
    ):
        node.meta[HASHABLE] = ANY_TYPES if any_types else SAME_TYPE
    return node


def null_safe_equal(
    pairs: Iterable[tuple[exp.Expr, exp.Expr]], hashable: bool = False, any_types: bool = False
) -> exp.Expr:
    """``a1 IS NOT DISTINCT FROM b1 AND ...``; TRUE for no pairs (a one-row aggregate's
    empty key matches its one row). ``hashable``: each pair's sides have one type;
    ``any_types``: hashable where they may differ (above)."""
    conditions = [_pair(left, right, hashable, any_types) for left, right in pairs]
    return exp.and_(*conditions, copy=False) if conditions else exp.true()  # the comparisons are new: no copy


def null_safe_match(
    left: str,
    right: str,
    names: Sequence[str],
    right_names: Sequence[str] | None = None,
    hashable: bool = False,
    any_types: bool = False,
) -> exp.Expr:
    """The columns ``names`` of the rows aliased ``left`` and ``right`` equal, NULL-safe
    (``right_names``: the same columns' names on the right, where they differ; ``hashable``:
    each column has one type on both sides, as a source's and its shadow's; ``any_types``:
    hashable where the types may differ, as a key table's and a model's)."""
    return null_safe_equal(
        (
            (exp.column(name, table=left, quoted=True), exp.column(other, table=right, quoted=True))
            for name, other in zip(names, right_names if right_names is not None else names, strict=True)
        ),
        hashable,
        any_types,
    )
