"""COUNT/SUM/AVG(DISTINCT x) of a model maintained from signed deltas (``signed_aggregates.py``).

A DISTINCT aggregate is not a sum of its rows, but it is a sum over its *values*: per group,
the values x held by at least one row. So beside the group state the model keeps, per value
set (one DISTINCT argument with its FILTER), the multiplicity of each (group, x): the rows of
the group holding x (``_sqlorch.dst<i>__<model>``, ``_sqlorch_rows`` per row). A change adds
the weighted count of its rows to those multiplicities (the same telescoping delta the group
partials use, grouped by x as well); a value whose multiplicity goes from 0 to positive enters
its group (COUNT +1, SUM +x), one that drops to 0 leaves it (COUNT -1, SUM -x). Those changes
are the DISTINCT aggregates' part of the next group state, summed like every other partial.
(Group, value) pairs at multiplicity 0 are deleted, so the state holds exactly the distinct
(group, x) pairs of the inputs: bounded by the model's input, visible in ``plan``. NULL x is
never stored (SQL does not count it); a NULL group key is a group like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sqlorch.analysis.signed_shape import Aggregate, aggregates_of
from sqlorch.execution.statements import STORED_AT, found_at
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.signed_aggregates import (
    ROWS,
    WEIGHT,
    aggregating,
    argument_column,
    condition_column,
    quoted_column,
    state_parts,
)

VALUE = "_sqlorch_x"
CHANGE = "_sqlorch_dw"  # the weighted change of a (group, value)'s multiplicity


@dataclass(frozen=True)
class ValueSet:
    """One DISTINCT argument under one FILTER, and the aggregates (their indexes among the
    model's aggregates) that read its values: COUNT(DISTINCT x) and SUM(DISTINCT x) share one."""

    argument: exp.Expr
    condition: exp.Expr | None
    aggregates: tuple[int, ...]


def value_sets(top: exp.Select) -> list[ValueSet]:
    """The model's value sets, in the order of their first aggregate (their state tables' order)."""
    sets: list[ValueSet] = []
    for index, aggregate in enumerate(aggregates_of(top)):
        if not aggregate.distinct:
            continue
        assert aggregate.argument is not None
        found = next(
            (i for i, s in enumerate(sets) if s.argument == aggregate.argument and s.condition == aggregate.condition),
            None,
        )
        if found is None:
            sets.append(ValueSet(aggregate.argument, aggregate.condition, (index,)))
        else:
            old = sets[found]
            sets[found] = ValueSet(old.argument, old.condition, (*old.aggregates, index))
    return sets


def value_columns(key: list[str]) -> list[str]:
    """The columns of a value set's state table."""
    return [*key, VALUE, ROWS]


def _by_value(
    select: exp.Select, top: exp.Select, key: list[str], values: ValueSet, weight: exp.Expr | None
) -> exp.Select:
    """``select`` (a copy of ``top``) projecting the keys, the value and its (weighted) rows,
    grouped by both: the rows whose value counts (FILTER true, not NULL) only."""
    select = aggregating(select, top, key, [], weight)
    select.select(exp.alias_(values.argument.copy(), VALUE, quoted=True), copy=False)
    select.where(values.argument.copy().is_(exp.null()).not_(), copy=False)
    if values.condition is not None:
        select.where(values.condition.copy(), copy=False)
    return select.group_by(values.argument.copy(), copy=False)


def build_values_query(top: exp.Select, key: list[str], values: ValueSet) -> exp.Select:
    """A value set's state from the inputs as they are: per (group, x) the rows holding x."""
    select = _by_value(top.copy(), top, key, values, None)
    names = value_columns(key)
    # key, ROWS, VALUE as projected: reorder into the table's column order
    by_name = {s.alias_or_name: s for s in select.selects}
    select.set("expressions", [by_name[name] for name in names])
    return select


def build_values_next_from_rows(
    key: list[str], values: ValueSet, stored: exp.Table, rows: exp.Table, row_ids: bool = False
) -> exp.Select:
    """Per (group, x) whose multiplicity the change moves: the change (``_sqlorch_dw``) and the
    multiplicity after it (``_sqlorch_rows``: the stored one, 0 when not stored, plus the
    change), from the weighted rows of the change (``signed_aggregates.build_signed_rows``).
    ``row_ids``: also the stored pair's DuckDB ``rowid`` (``_sqlorch_rowid``, NULL when not
    stored), by which ``statements.delete_found`` deletes it without a second scan of the table."""
    index = values.aggregates[0]  # the set's calls share its argument and FILTER
    r = rows.alias_or_name
    value = quoted_column(argument_column(index), r)
    weight = exp.func("sum", quoted_column(WEIGHT, r))
    change = (
        exp.select(*[quoted_column(n, r) for n in key], exp.alias_(value, VALUE, quoted=True))
        .select(exp.alias_(weight, CHANGE, quoted=True))
        .from_(rows.copy())
        .where(value.copy().is_(exp.null()).not_())
        .group_by(*[quoted_column(n, r) for n in [*key, argument_column(index)]])
        .having(exp.NEQ(this=weight.copy(), expression=exp.Literal.number(0)))
    )
    if values.condition is not None:
        change = change.where(quoted_column(condition_column(index), r))
    # the stored pairs of the change's values only, found by one column before the pairs are
    # matched on all of theirs (the values a change holds are few: the users with new events)
    s = stored.alias_or_name
    narrowed = exp.select(*[quoted_column(n, s) for n in [*key, VALUE, ROWS]])
    if row_ids:
        narrowed = narrowed.select(found_at(s))
    changed_values = exp.Subquery(this=exp.select(value.copy()).from_(rows.copy()))
    narrowed = narrowed.from_(stored.copy()).where(exp.In(this=quoted_column(VALUE, s), query=changed_values))
    return _after_change(change, key, narrowed.subquery(s), row_ids)


def _after_change(change: exp.Select, key: list[str], stored: exp.Subquery, row_ids: bool) -> exp.Select:
    """The changed (group, x) pairs of ``change`` (keys, ``_sqlorch_x``, ``_sqlorch_dw``) with
    their multiplicity after it: the stored one (``stored``), 0 when not stored, plus the change."""
    s = stored.alias_or_name
    same_value = exp.EQ(this=quoted_column(VALUE, "c"), expression=quoted_column(VALUE, s))
    on = exp.and_(null_safe_match("c", s, key, any_types=True), same_value) if key else same_value
    after = exp.Add(
        this=exp.func("coalesce", quoted_column(ROWS, s), exp.Literal.number(0)), expression=quoted_column(CHANGE, "c")
    )
    columns: list[exp.Expr] = [quoted_column(n, "c") for n in [*key, VALUE, CHANGE]]
    columns.append(exp.alias_(after, ROWS, quoted=True))
    if row_ids:
        columns.append(quoted_column(STORED_AT, s))
    return exp.select(*columns).from_(change.subquery("c")).join(stored, on=on, join_type="LEFT")


def build_distinct_change(top: exp.Select, key: list[str], values: ValueSet, following: exp.Table) -> exp.Select:
    """Rows of the group state's columns adding what a value set's crossings do to its
    aggregates: +1 (and +x) per value entering a group, -1 (and -x) per value leaving it, zero
    for every other partial (NULL for a MIN/MAX, which the next state's MIN/MAX ignores).
    ``following``: the set's ``build_values_next`` rows."""
    f = following.alias_or_name
    now, change = quoted_column(ROWS, f), quoted_column(CHANGE, f)
    entered = exp.and_(exp.GT(this=now, expression=exp.Literal.number(0)), exp.EQ(this=now.copy(), expression=change))
    left = exp.EQ(this=now.copy(), expression=exp.Literal.number(0))

    def crossing(enter: exp.Expr, leave: exp.Expr) -> exp.Expr:
        return exp.Case(ifs=[exp.If(this=entered.copy(), true=enter), exp.If(this=left.copy(), true=leave)]).else_(
            exp.Literal.number(0)
        )

    one, value = exp.Literal.number(1), quoted_column(VALUE, f)
    counted = crossing(one, exp.Neg(this=one.copy()))
    summed = crossing(value, exp.Neg(this=exp.paren(value.copy())))
    aggregates = aggregates_of(top)
    by_part: dict[str, exp.Expr] = {}
    for index in values.aggregates:
        aggregate: Aggregate = aggregates[index]
        name = f"_sqlorch_a{index}_"
        if aggregate.kind == "count":
            by_part[name + "c"] = counted
        else:
            by_part[name + "s"], by_part[name + "n"] = summed, counted
    columns: list[exp.Expr] = [quoted_column(n, f) for n in key]
    columns.append(exp.alias_(exp.Literal.number(0), ROWS, quoted=True))
    for name, how in state_parts(aggregates):
        default = exp.Literal.number(0) if how == "sum" else exp.null()
        columns.append(exp.alias_(by_part.get(name, default).copy(), name, quoted=True))
    return exp.select(*columns).from_(following.copy())


def value_keys_match(table: exp.Table, key: list[str], row_alias: str) -> exp.Exists:
    """``EXISTS`` a row of ``table`` with the (group, value) of the row ``row_alias``: the
    stored pairs a change replaces."""
    alias = table.alias_or_name
    same_value = exp.EQ(this=quoted_column(VALUE, alias), expression=quoted_column(VALUE, row_alias))
    condition = exp.and_(null_safe_match(alias, row_alias, key, any_types=True), same_value) if key else same_value
    return exp.Exists(this=exp.select(exp.Literal.number(1)).from_(table).where(condition))
