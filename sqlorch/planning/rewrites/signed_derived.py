"""The signed change of an aggregated derived table: a decorrelated subquery (``analysis/
decorrelate.py``) such as ``(SELECT l_orderkey AS k0 FROM lineitem GROUP BY l_orderkey
HAVING sum(l_quantity) > 300)``, whose one table changed.

Its groups are not maintained: a change of its table touches a few of them (their keys
are the GROUP BY expressions over the changed rows, old and new images), and the derived
table changes by those groups' rows as they are now (+1) less their rows before the change
(-1). The rows now are the derived table's own SQL restricted to the touched keys; the rows
before are rebuilt from the table's rows before the change, weighted (``old_rows``), as the
groups of the model are (``signed_aggregates.py``: COUNT and SUM of weighted rows, HAVING
applied to the finalised values), which is why only such aggregates are allowed there
(``analysis/signed_shape.py``). A one-row aggregate has one group, always touched.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.analysis.inline_ctes import alias_identifier
from sqlorch.analysis.signed_shape import aggregates_of, group_names, is_aggregated
from sqlorch.planning.key_match import null_safe_equal

RowsFor = Callable[[exp.Table], exp.Query]
TOUCHED = "_sqlorch_dk"
STATE = "_sqlorch_ds"


def changed_derived(select: exp.Expr, is_changed: Callable[[exp.Table], bool]) -> list[exp.Subquery]:
    """The aggregated derived tables of ``select`` whose table changed, in order."""
    return [
        item
        for item in select.find_all(exp.Subquery)
        if isinstance(item.parent, (exp.From, exp.Join))
        and isinstance(item.this, exp.Select)
        and is_aggregated(item.this)
        and any(is_changed(t) for t in item.this.find_all(exp.Table))
    ]


def _table(inner: exp.Select) -> exp.Table:
    from_ = inner.args.get("from_") or inner.args.get("from")
    table = from_.this if from_ is not None else None
    assert isinstance(table, exp.Table)  # analysis/signed_shape.py: one table
    return table


def _groups(inner: exp.Select) -> list[exp.Expr]:
    names = group_names(inner)
    return [s.unalias() for s in inner.selects if s.alias_or_name.lower() in names]


def _over(inner: exp.Select, rows: exp.Query) -> exp.Select:
    """A copy of ``inner`` reading ``rows`` in place of its table."""
    copy = inner.copy()
    table = _table(copy)
    table.replace(exp.Subquery(this=rows, alias=exp.TableAlias(this=alias_identifier(table))))
    return copy


def touched_keys(inner: exp.Select, delta_rows: RowsFor) -> exp.Select:
    """The group keys the change touches, named as the derived table's group columns."""
    over = _over(inner, delta_rows(_table(inner)))
    names = group_names(inner)
    over.set("expressions", [exp.alias_(g.copy(), n, quoted=True) for g, n in zip(_groups(inner), names, strict=True)])
    for name in ("group", "having"):
        over.set(name, None)
    return over.distinct()


def _restricted(select: exp.Select, inner: exp.Select, keys: exp.Select | None) -> exp.Select:
    if keys is None or not _groups(inner):
        return select
    match = null_safe_equal(
        (
            (exp.column(name, table=TOUCHED, quoted=True), group.copy())
            for group, name in zip(_groups(inner), group_names(inner), strict=True)
        ),
        any_types=True,
    )
    touched = exp.select(exp.Literal.number(1)).from_(keys.subquery(exp.to_identifier(TOUCHED, quoted=True)))
    return select.where(exp.Exists(this=touched.where(match)))


def _weighted(select: exp.Select, sign: int) -> exp.Select:
    from sqlorch.planning.rewrites.signed_aggregates import WEIGHT

    return select.select(exp.alias_(exp.Literal.number(sign), WEIGHT, quoted=True))


def rows_before(inner: exp.Select, old_rows: RowsFor, keys: exp.Select | None, sign: int) -> exp.Select:
    """The derived table's rows before the change (of the groups in ``keys``; None: all),
    rebuilt from its table's weighted old rows, with weight ``sign``."""
    # imported here: that module builds the delta that calls this one
    from sqlorch.planning.rewrites.signed_aggregates import WEIGHT, aggregating, build_finalise

    table = _table(inner)
    over = _restricted(_over(inner, old_rows(table)), inner, keys)
    weight = exp.column(WEIGHT, table=alias_identifier(table).name, quoted=True)
    names = group_names(inner)
    state = aggregating(over, inner, names, aggregates_of(inner), weight)
    final = build_finalise(inner, names, exp.to_table(STATE))
    placeholder = final.find(exp.Table)
    assert placeholder is not None
    placeholder.replace(state.subquery(exp.to_identifier(STATE, quoted=True)))
    return _weighted(final, sign)


def derived_delta(inner: exp.Select, delta_rows: RowsFor, old_rows: RowsFor) -> tuple[exp.Query, exp.Select]:
    """The derived table's signed change, and the touched keys (for the other sides' key
    filters: every row of the change has one of them)."""
    keys = touched_keys(inner, delta_rows)
    now = _weighted(_restricted(inner.copy(), inner, keys), 1)
    return exp.union(now, rows_before(inner, old_rows, keys, -1), distinct=False), keys
