"""Maintain a GROUP BY model from the signed deltas of its inputs (``analysis/signed_shape.py``).

The model's groups are kept as *state*: per group the rows it holds (``_sqlorch_rows``) and
per aggregate call its partial values, all additive except MIN/MAX:

| aggregate | state | output |
|---|---|---|
| COUNT(*), COUNT(x) | c: weighted count | c |
| SUM(x) | s: weighted sum, n: weighted count of non-NULL x | s, or NULL where n = 0 |
| AVG(x) | s, n as for SUM | s / n, NULL where n = 0 (x of INT or smaller: see ``signed_shape``) |
| MIN(x), MAX(x) | m: the extreme | m |

A FILTER (WHERE c) becomes a CASE inside the partials. The delta of a group is the model's
FROM/WHERE/GROUP BY evaluated over the changes, each row weighted (new image +1, old image
-1), by the telescoping delta rule for several changed occurrences: occurrence i gets its
change, the occurrences before it their old rows (current rows +1, the change negated), those
after it their current rows. The next state is the stored state plus the delta; a MIN/MAX
group from which a value at or beyond its stored extreme left is recomputed from the inputs
instead. The output rows are the next state finalised: groups with no rows disappear, and
HAVING is applied to the finalised values (filtered groups stay in the state: a later change
can bring them back). COUNT/SUM/AVG(DISTINCT x) keep the same partials, changed not by the
rows but by the values whose multiplicity crosses zero (``signed_distinct.py``); aggregates
without such a state keep the recompute-affected-keys strategy (``analysis/signed_shape.py``
says why).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from sqlglot import exp

from sqlorch.analysis.inline_ctes import alias_identifier
from sqlorch.analysis.signed_shape import Aggregate, aggregates_of
from sqlorch.execution.statements import union_all
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.restrict_to_keys import restrict_to_keys
from sqlorch.planning.rewrites.signed_key_filters import filter_by_change

ROWS = "_sqlorch_rows"
WEIGHT = "_sqlorch_w"

RowsFor = Callable[[exp.Table], exp.Query]


def quoted_column(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _part(index: int, part: str) -> str:
    return f"_sqlorch_a{index}_{part}"


def state_parts(aggregates: list[Aggregate]) -> list[tuple[str, str]]:
    """(column, how it combines: sum | min | max) of the state, after ``_sqlorch_rows``."""
    parts: list[tuple[str, str]] = []
    for index, aggregate in enumerate(aggregates):
        if aggregate.kind == "count":
            parts.append((_part(index, "c"), "sum"))
        elif aggregate.kind in ("sum", "avg"):
            parts += [(_part(index, "s"), "sum"), (_part(index, "n"), "sum")]
        else:
            parts.append((_part(index, "m"), aggregate.kind))
    return parts


def _removed(aggregates: list[Aggregate]) -> list[tuple[int, Aggregate]]:
    return [(i, a) for i, a in enumerate(aggregates) if a.kind in ("min", "max")]


def _zero_if_null(value: exp.Expr) -> exp.Expr:
    return exp.func("coalesce", value, exp.Literal.number(0))


def _when(conditions: list[exp.Expr | None], then: exp.Expr, otherwise: exp.Expr | None = None) -> exp.Expr:
    kept = [c.copy() for c in conditions if c is not None]
    if not kept:
        return then
    case = exp.Case(ifs=[exp.If(this=exp.and_(*kept), true=then)])
    return case.else_(otherwise) if otherwise is not None else case


def _partials(aggregates: list[Aggregate], weight: exp.Expr | None) -> list[exp.Expr]:
    """The state's columns computed over rows of weight ``weight`` (None: every row counts once)."""
    one = weight.copy() if weight is not None else exp.Literal.number(1)
    positive = exp.GT(this=weight.copy(), expression=exp.Literal.number(0)) if weight is not None else None
    negative = exp.LT(this=weight.copy(), expression=exp.Literal.number(0)) if weight is not None else None
    columns: list[exp.Expr] = [exp.alias_(_zero_if_null(exp.func("sum", one.copy())), ROWS, quoted=True)]
    for index, aggregate in enumerate(aggregates):
        if aggregate.distinct:
            columns += distinct_partials(aggregate, index, weight is None)
            continue
        x = aggregate.argument
        present = x.copy().is_(exp.null()).not_() if x is not None else None
        counted = _zero_if_null(
            exp.func("sum", _when([aggregate.condition, present], one.copy(), exp.Literal.number(0)))
        )
        if aggregate.kind == "count":
            columns.append(exp.alias_(counted, _part(index, "c"), quoted=True))
            continue
        assert x is not None
        if aggregate.kind in ("sum", "avg"):
            signed = (
                x.copy()
                if negative is None  # a weight of -1 negates: x * weight could overflow a DECIMAL(38)
                else exp.Case(ifs=[exp.If(this=negative.copy(), true=exp.Neg(this=exp.paren(x.copy())))]).else_(
                    x.copy()
                )
            )
            total = _zero_if_null(exp.func("sum", _when([aggregate.condition], signed)))
            columns += [
                exp.alias_(total, _part(index, "s"), quoted=True),
                exp.alias_(counted, _part(index, "n"), quoted=True),
            ]
            continue
        extreme = exp.Min if aggregate.kind == "min" else exp.Max
        columns.append(
            exp.alias_(extreme(this=_when([aggregate.condition, positive], x.copy())), _part(index, "m"), quoted=True)
        )
        if negative is not None:
            columns.append(
                exp.alias_(
                    extreme(this=_when([aggregate.condition, negative], x.copy())), _part(index, "r"), quoted=True
                )
            )
    return columns


def distinct_partials(aggregate: Aggregate, index: int, from_inputs: bool) -> list[exp.Expr]:
    """A DISTINCT aggregate's partials: from the inputs, COUNT/SUM(DISTINCT) of its values;
    over weighted changes zero, since its change is that of the values whose multiplicity
    crosses zero (``signed_distinct.py``), added to the next state beside this delta."""
    assert aggregate.argument is not None
    value = _when([aggregate.condition], aggregate.argument.copy())
    count = exp.Count(this=exp.Distinct(expressions=[value.copy()])) if from_inputs else exp.Literal.number(0)
    if aggregate.kind == "count":
        return [exp.alias_(count, _part(index, "c"), quoted=True)]
    total = _zero_if_null(exp.Sum(this=exp.Distinct(expressions=[value]))) if from_inputs else exp.Literal.number(0)
    return [exp.alias_(total, _part(index, "s"), quoted=True), exp.alias_(count, _part(index, "n"), quoted=True)]


def _keys(top: exp.Select, key: list[str]) -> list[exp.Expr]:
    by_name = {s.alias_or_name.lower(): s.unalias() for s in top.selects}
    return [exp.alias_(by_name[name].copy(), name, quoted=True) for name in key]


def aggregating(
    select: exp.Select, top: exp.Select, key: list[str], aggregates: list[Aggregate], weight: exp.Expr | None
) -> exp.Select:
    """``select`` (a copy of ``top``, maybe substituted) projecting the keys and partials."""
    select.set("expressions", [*_keys(top, key), *_partials(aggregates, weight)])
    for name in ("having", "order", "limit", "offset"):
        select.set(name, None)
    return select


def build_state_query(top: exp.Select, key: list[str]) -> exp.Select:
    """The state of every group, from the current inputs (first build of the state, and the
    groups whose MIN/MAX must be recomputed)."""
    return aggregating(top.copy(), top, key, aggregates_of(top), None)


def _from_items(select: exp.Select) -> list[exp.Expr]:
    from_ = select.args.get("from_") or select.args.get("from")
    return ([from_.this] if from_ else []) + [join.this for join in select.args.get("joins") or []]


def _weigh(select: exp.Select, weighted: set[int]) -> exp.Expr | None:
    """The weight of ``select``'s rows: the product of its weighted sources' weights. A
    derived table that reads a weighted source gets the weight as one more column."""
    factors: list[exp.Expr] = []
    for item in _from_items(select):
        if not isinstance(item, exp.Subquery):
            continue
        alias = item.alias_or_name
        if id(item) in weighted:
            factors.append(quoted_column(WEIGHT, alias))
            continue
        inner = item.this
        if not isinstance(inner, exp.Select):
            continue
        weight = _weigh(inner, weighted)
        if weight is None:
            continue
        inner.select(exp.alias_(weight, WEIGHT, quoted=True), copy=False)
        table_alias = item.args.get("alias")
        if isinstance(table_alias, exp.TableAlias) and table_alias.columns:
            table_alias.append("columns", exp.to_identifier(WEIGHT, quoted=True))
        factors.append(quoted_column(WEIGHT, alias))
    if not factors:
        return None
    product = factors[0]
    for factor in factors[1:]:
        product = exp.Mul(this=product, expression=factor)
    return product


def delta_branches(
    top: exp.Select,
    is_changed: Callable[[exp.Table], bool],
    delta_rows: RowsFor,
    old_rows: RowsFor,
) -> list[tuple[exp.Select, exp.Expr]]:
    """The terms of the telescoping sum: per changed unit a copy of ``top`` reading it as its
    change, and the weight of that copy's rows. ``delta_rows`` and ``old_rows`` give a
    changed table's change and its rows before the change, each with a ``_sqlorch_w`` column."""
    # imported here: the derived tables' change is built from this module's parts
    from sqlorch.planning.rewrites.signed_derived import changed_derived, derived_delta, rows_before

    def units(select: exp.Select) -> list[exp.Expr]:
        """What changed, in the order of the telescoping sum: the changed tables read
        directly, then the aggregated derived tables over a changed table (read as they are
        now by every branch but their own)."""
        derived = changed_derived(select, is_changed)
        inside = {id(t) for d in derived for t in d.find_all(exp.Table)}
        return [t for t in select.find_all(exp.Table) if is_changed(t) and id(t) not in inside] + list(derived)

    branches: list[tuple[exp.Select, exp.Expr]] = []
    for index in range(len(units(top))):
        copy = top.copy()
        weighted: set[int] = set()
        keys: exp.Query | None = None
        for position, unit in enumerate(units(copy)):
            if position > index:
                continue  # read as it is now
            if isinstance(unit, exp.Table):
                rows = delta_rows(unit) if position == index else old_rows(unit)
            elif position == index:
                assert isinstance(unit.this, exp.Select)
                rows, keys = derived_delta(unit.this, delta_rows, old_rows)
            else:
                assert isinstance(unit.this, exp.Select)
                rows = rows_before(unit.this, old_rows, None, 1)
            replacement = exp.Subquery(this=rows, alias=exp.TableAlias(this=alias_identifier(unit)))
            unit.replace(replacement)
            weighted.add(id(replacement))
            if position == index:
                delta = replacement
        parent = delta.parent_select
        assert isinstance(parent, exp.Select)
        filter_by_change(parent, delta, weighted, keys)
        weight = _weigh(copy, weighted)
        assert weight is not None
        branches.append((copy, weight))
    return branches


def build_delta(
    top: exp.Select,
    key: list[str],
    is_changed: Callable[[exp.Table], bool],
    delta_rows: RowsFor,
    old_rows: RowsFor,
) -> exp.Select:
    """Per group touched by the change, the weighted change of every partial, plus per
    MIN/MAX the extreme of the rows that left (``_r``); the arguments as for ``delta_branches``."""
    aggregates = aggregates_of(top)
    branches: list[exp.Query] = [
        aggregating(copy, top, key, aggregates, weight)
        for copy, weight in delta_branches(top, is_changed, delta_rows, old_rows)
    ]
    return combine_branches(branches, key, aggregates)


def argument_column(index: int) -> str:
    """The column of ``build_signed_rows`` holding the argument of the aggregate at ``index``."""
    return f"_sqlorch_v{index}"


def condition_column(index: int) -> str:
    """The column of ``build_signed_rows`` holding the FILTER of the aggregate at ``index``."""
    return f"_sqlorch_f{index}"


def build_signed_rows(
    top: exp.Select,
    key: list[str],
    is_changed: Callable[[exp.Table], bool],
    delta_rows: RowsFor,
    old_rows: RowsFor,
) -> exp.Query:
    """The weighted rows of every branch of the telescoping sum, before any grouping: the
    group keys, per aggregate its argument (``_sqlorch_v<i>``) and FILTER condition
    (``_sqlorch_f<i>``), and the weight. Kept in a scratch table, they give the delta per
    group (``build_delta_from_rows``) and the DISTINCT values' change
    (``signed_distinct.build_values_next_from_rows``) from one read of the inputs: each built
    from the branches, both read the rows of the unchanged side a change reaches (the events
    of the users who changed plan: a scan of the whole events table) once each."""
    aggregates = aggregates_of(top)
    branches: list[exp.Query] = []
    for copy, weight in delta_branches(top, is_changed, delta_rows, old_rows):
        columns = _keys(top, key)
        for index, aggregate in enumerate(aggregates):
            if aggregate.argument is not None:
                columns.append(exp.alias_(aggregate.argument.copy(), argument_column(index), quoted=True))
            if aggregate.condition is not None:
                columns.append(exp.alias_(aggregate.condition.copy(), condition_column(index), quoted=True))
        columns.append(exp.alias_(weight, WEIGHT, quoted=True))
        copy.set("expressions", columns)
        for name in ("distinct", "group", "having", "order", "limit", "offset"):
            copy.set(name, None)
        branches.append(copy)
    return union_all(branches)


def _signed_row_columns(aggregate: Aggregate, index: int) -> Aggregate:
    """``aggregate`` reading the columns ``build_signed_rows`` projects for it."""
    return replace(
        aggregate,
        argument=quoted_column(argument_column(index)) if aggregate.argument is not None else None,
        condition=quoted_column(condition_column(index)) if aggregate.condition is not None else None,
    )


def build_delta_from_rows(top: exp.Select, key: list[str], rows: exp.Table) -> exp.Select:
    """``build_delta`` over the table of ``build_signed_rows``: the same columns and values."""
    aggregates = aggregates_of(top)
    read = [_signed_row_columns(a, i) for i, a in enumerate(aggregates)]
    select = exp.select(
        *[exp.alias_(quoted_column(n), n, quoted=True) for n in key], *_partials(read, quoted_column(WEIGHT))
    ).from_(rows.copy())
    if key:
        select = select.group_by(*[quoted_column(n) for n in key])
    return combine_branches([select], key, aggregates)


def combine_branches(branches: list[exp.Query], key: list[str], aggregates: list[Aggregate]) -> exp.Select:
    """The delta per group: the branches' partials (``aggregating``) added up."""
    union = union_all(branches)
    combined: list[exp.Expr] = [quoted_column(name, "d") for name in key]
    combined.append(exp.alias_(exp.func("sum", quoted_column(ROWS, "d")), ROWS, quoted=True))
    for name, how in state_parts(aggregates):
        combined.append(exp.alias_(exp.func(how, quoted_column(name, "d")), name, quoted=True))
    for index, aggregate in _removed(aggregates):
        name = _part(index, "r")
        combined.append(exp.alias_(exp.func(aggregate.kind, quoted_column(name, "d")), name, quoted=True))
    query = exp.select(*combined).from_(union.subquery("d"))
    return query.group_by(*[quoted_column(name, "d") for name in key]) if key else query


def matches(keys: exp.Table, key: list[str], row_alias: str) -> exp.Exists:
    """``EXISTS`` a row of ``keys`` with the key of the row ``row_alias`` (NULL-safe); with no
    key, whether ``keys`` has a row at all."""
    alias = keys.alias_or_name
    query = exp.select(exp.Literal.number(1)).from_(keys)
    return exp.Exists(this=query.where(null_safe_match(alias, row_alias, key, any_types=True)) if key else query)


def build_recompute_keys(top: exp.Select, key: list[str], delta: exp.Table, state: exp.Table) -> exp.Select | None:
    """The groups a MIN/MAX must be recomputed for: a value at or beyond the stored extreme
    left (or the group was not stored). None when the model has no MIN/MAX."""
    removed = _removed(aggregates_of(top))
    if not removed:
        return None
    d, s = delta.alias_or_name, state.alias_or_name
    conditions = []
    for index, aggregate in removed:
        gone, stored = quoted_column(_part(index, "r"), d), quoted_column(_part(index, "m"), s)
        beyond = exp.LTE if aggregate.kind == "min" else exp.GTE
        conditions.append(
            exp.and_(
                gone.is_(exp.null()).not_(),
                exp.or_(stored.is_(exp.null()), beyond(this=gone.copy(), expression=stored)),
            )
        )
    on = null_safe_match(d, s, key, any_types=True)  # TRUE for no key
    projected: list[exp.Expr] = [quoted_column(n, d) for n in key] or [
        exp.alias_(exp.Literal.number(1), ROWS, quoted=True)
    ]
    return exp.select(*projected).from_(delta).join(state, on=on, join_type="LEFT").where(exp.or_(*conditions))


def build_next_state(
    top: exp.Select,
    key: list[str],
    state: exp.Table,
    delta: exp.Table,
    recompute: exp.Table | None,
    inputs_state: exp.Query | None,
    extra: tuple[exp.Query, ...] = (),
) -> exp.Select:
    """The state of the touched groups after the change: stored state plus delta (plus the
    rows of ``extra``, of the state's columns: the DISTINCT aggregates' change, from
    ``signed_distinct.py``), or, for the groups in ``recompute``, ``inputs_state`` (the state
    query) restricted to them."""
    parts = state_parts(aggregates_of(top))
    names = [*key, ROWS, *(name for name, _ in parts)]
    stored = (
        exp.select(*[quoted_column(n, "s") for n in names]).from_(state.copy()).where(matches(delta.copy(), key, "s"))
    )
    added = exp.select(*[quoted_column(n, "d") for n in names]).from_(delta.copy())
    more = [exp.select(*[quoted_column(n, "x") for n in names]).from_(e.subquery("x")) for e in extra]
    branches: list[exp.Query] = [stored, added, *more]
    if recompute is not None and inputs_state is not None:
        stored = stored.where(matches(recompute.copy(), key, "s").not_())
        added = added.where(matches(recompute.copy(), key, "d").not_())
        more = [m.where(matches(recompute.copy(), key, "x").not_()) for m in more]
        again = restrict_to_keys(inputs_state, key, recompute.copy()) if key else inputs_state.copy()
        fresh = exp.select(*[quoted_column(n, "f") for n in names]).from_(again.subquery("f"))
        if not key:
            fresh = fresh.where(matches(recompute.copy(), [], "f"))
        branches = [stored, added, *more, fresh]
    union = union_all(branches)
    combined: list[exp.Expr] = [quoted_column(n, "u") for n in key]
    combined.append(exp.alias_(exp.func("sum", quoted_column(ROWS, "u")), ROWS, quoted=True))
    combined += [exp.alias_(exp.func(how, quoted_column(name, "u")), name, quoted=True) for name, how in parts]
    query = exp.select(*combined).from_(union.subquery("u"))
    return query.group_by(*[quoted_column(n, "u") for n in key]) if key else query


def _finalised(aggregate: Aggregate, index: int, avg_type: str) -> exp.Expr:
    if aggregate.kind == "count":
        return exp.cast(quoted_column(_part(index, "c")), exp.DataType.build("BIGINT"))
    if aggregate.kind in ("min", "max"):
        return quoted_column(_part(index, "m"))
    some = exp.GT(this=quoted_column(_part(index, "n")), expression=exp.Literal.number(0))
    if aggregate.kind == "sum":
        return exp.Case(ifs=[exp.If(this=some, true=quoted_column(_part(index, "s")))])
    mean = exp.Div(
        this=exp.cast(quoted_column(_part(index, "s")), exp.DataType.build(avg_type)),
        expression=exp.cast(quoted_column(_part(index, "n")), exp.DataType.build(avg_type)),
    )
    return exp.Case(ifs=[exp.If(this=some, true=mean)])


def _finalise(
    expression: exp.Expr, aggregates: list[Aggregate], groups: dict[exp.Expr, str], avg_type: str
) -> exp.Expr:
    def swap(node: exp.Expr) -> exp.Expr:
        for index, aggregate in enumerate(aggregates):
            if node == aggregate.node:
                return _finalised(aggregate, index, avg_type)
        for group, name in groups.items():
            if node == group:
                return quoted_column(name)
        return node

    return expression.copy().transform(swap)


def build_finalise(top: exp.Select, key: list[str], state: exp.Table, avg_type: str = "DOUBLE") -> exp.Select:
    """The model's rows from its state: each output column over the state's columns, only
    groups that hold rows (a one-row aggregate always has its row), HAVING applied."""
    aggregates = aggregates_of(top)
    groups = {s.unalias(): s.alias_or_name.lower() for s in top.selects if s.alias_or_name.lower() in key}
    columns = [
        quoted_column(s.alias_or_name.lower())
        if s.alias_or_name.lower() in key
        else exp.alias_(_finalise(s.unalias(), aggregates, groups, avg_type), s.alias_or_name, quoted=True)
        for s in top.selects
    ]
    query = exp.select(*columns).from_(state.copy())
    if top.args.get("group") is not None:
        query = query.where(exp.GT(this=quoted_column(ROWS), expression=exp.Literal.number(0)))
    having = top.args.get("having")
    if having is not None:
        query = query.where(_finalise(having.this, aggregates, groups, avg_type))
    leftover = [c for c in query.find_all(exp.Column) if c.table]
    if leftover:
        raise ValueError(f"column {leftover[0].sql()} is neither a group key nor inside an aggregate")
    return query
