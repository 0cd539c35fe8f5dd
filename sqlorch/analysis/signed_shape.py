"""Whether a GROUP BY model can be maintained from signed deltas, and its aggregates.

Every input row carries a weight: +1 for a row now present, -1 for a row that left. Over
inner joins and row filters the weight of a joined row is the product of its parts', and
COUNT and SUM of a group change by the weighted sums of the changed rows: the delta rule of
DBSP and of the incremental view maintenance literature. AVG is kept as its sum and count.
MIN and MAX change by the new rows' extreme unless a row holding the stored extreme left;
such groups are recomputed. COUNT/SUM/AVG(DISTINCT x) change by the values whose count of
rows in the group crosses zero, kept per (group, x) (``planning/rewrites/signed_distinct.py``).
The shape holds for one SELECT with GROUP BY (or a one-row aggregate) whose FROM is base
tables and row-preserving derived tables, joined inner.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.dialect import DialectType
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.schema import Schema

KINDS: dict[type[exp.Expr], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
}
# Sums of these differ with the order rows are added in: no exact incremental form.
INEXACT = (exp.DataType.Type.FLOAT, exp.DataType.Type.DOUBLE, exp.DataType.Type.UDOUBLE, exp.DataType.Type.DECFLOAT)


# AVG of these is the sum divided by the count in double precision (DuckDB) or NUMERIC
# (Postgres), reproduced exactly from the stored sum and count; DuckDB averages BIGINT and
# DECIMAL in long double, which SQL cannot write (checked: 7020/600 gives 11.700000000000001).
AVG_FROM_SUM_AND_COUNT = (
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.UTINYINT,
    exp.DataType.Type.USMALLINT,
)


class NotSigned(Exception):
    """The shape has no signed-delta form; the text says why."""


@dataclass(frozen=True)
class Aggregate:
    """One aggregate call of the top SELECT (its select list or HAVING)."""

    node: exp.Expr  # the call as written, FILTER included: found again by equality
    kind: str  # count | sum | avg | min | max
    argument: exp.Expr | None  # None for COUNT(*)
    condition: exp.Expr | None  # the FILTER (WHERE ...) condition
    # COUNT/SUM/AVG(DISTINCT x): kept through per-value multiplicities (``signed_distinct.py``)
    distinct: bool = False


def _own(root: exp.Expr) -> list[exp.Expr]:
    return list(root.walk(prune=lambda n: n is not root and isinstance(n, (exp.Subquery, exp.Query))))


def aggregates_of(top: exp.Select) -> list[Aggregate]:
    """The distinct aggregate calls of ``top``'s select list and HAVING, in order."""
    found: list[Aggregate] = []
    roots = [*top.selects, *([top.args["having"]] if top.args.get("having") else [])]
    for root in roots:
        for node in _own(root):
            if isinstance(node, exp.Filter) and isinstance(node.this, exp.AggFunc):
                call, condition = node.this, node.expression
                condition = condition.this if isinstance(condition, exp.Where) else condition
            elif isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Filter):
                call, condition = node, None
            else:
                continue
            kind = KINDS.get(type(call))
            if kind is None:
                raise NotSigned(f"aggregate {call.sql()} has no signed-delta form")
            distinct = isinstance(call.this, exp.Distinct)
            if distinct and (
                len(call.this.expressions) != 1
                or call.this.args.get("on")
                or isinstance(call.this.expressions[0], exp.Tuple)
            ):
                raise NotSigned(f"{call.sql()}: a DISTINCT aggregate of several arguments")
            if call.expressions:
                raise NotSigned(f"{call.sql()}: an aggregate of several arguments")
            argument = call.this.expressions[0] if distinct else None if isinstance(call.this, exp.Star) else call.this
            distinct = distinct and kind in ("count", "sum", "avg")  # MIN/MAX(DISTINCT x) is MIN/MAX(x)
            if argument is not None and any(isinstance(n, (exp.AggFunc, exp.Subquery)) for n in argument.walk()):
                raise NotSigned(f"{call.sql()}: a nested aggregate or subquery")
            if kind != "count" and argument is None:
                raise NotSigned(f"{call.sql()}: no argument")
            aggregate = Aggregate(node, kind, argument, condition, distinct)
            if all(a.node != aggregate.node for a in found):
                found.append(aggregate)
    return found


def _from_items(select: exp.Select) -> list[exp.Expr]:
    from_ = select.args.get("from_") or select.args.get("from")
    return ([from_.this] if from_ else []) + [join.this for join in select.args.get("joins") or []]


def _check_from(select: exp.Select) -> None:
    """Base tables and row-preserving derived tables, inner-joined, nothing else."""
    for join in select.args.get("joins") or []:
        if join.side or join.kind not in ("", "INNER", "CROSS", None):
            raise NotSigned(f"{(join.side or join.kind)} JOIN: NULL-extended rows are not a sum of their parts")
        if join.args.get("using"):
            raise NotSigned("JOIN ... USING")
    if select.args.get("laterals") or select.args.get("pivots"):
        raise NotSigned("LATERAL or PIVOT in FROM")
    for item in _from_items(select):
        if isinstance(item, exp.Table):
            if not isinstance(item.this, exp.Identifier):
                raise NotSigned(f"table function {item.sql()}")
            continue
        if not isinstance(item, exp.Subquery) or not isinstance(item.this, exp.Select):
            raise NotSigned(f"FROM item {item.sql()[:60]}")
        inner = item.this
        if is_aggregated(inner):
            _check_aggregated(inner)
            continue
        for key in ("group", "having", "qualify", "distinct", "limit", "offset", "order"):
            if inner.args.get(key):
                raise NotSigned(f"a derived table with {key.upper()}: its rows are not one per input row")
        if any(isinstance(n, (exp.AggFunc, exp.Window)) for s in inner.selects for n in _own(s)):
            raise NotSigned("a derived table with an aggregate or window")
        if any(s.is_star for s in inner.selects):
            raise NotSigned("a derived table with SELECT *")
        _check_from(inner)


def is_aggregated(select: exp.Select) -> bool:
    """A derived table of groups (GROUP BY, or a one-row aggregate): a decorrelated subquery."""
    return select.args.get("group") is not None or any(
        isinstance(n, exp.AggFunc) for s in select.selects for n in _own(s)
    )


def group_names(select: exp.Select) -> list[str]:
    """The output columns of an aggregated derived table that are its GROUP BY expressions."""
    group = select.args.get("group")
    groups = group.expressions if group is not None else []
    return [s.alias_or_name.lower() for s in select.selects if s.unalias() in groups]


def _check_aggregated(inner: exp.Select) -> None:
    """An aggregated derived table changes, when its one table changes, by its groups that
    the change touches: old rows out (-1), new rows in (+1). Its old groups are rebuilt from
    the weighted old rows, so its aggregates must be sums (COUNT, SUM), read from one table."""
    for key in ("qualify", "distinct", "limit", "offset", "order", "joins", "laterals"):
        if inner.args.get(key):
            raise NotSigned(f"an aggregated derived table with {key.upper()}")
    from_ = inner.args.get("from_") or inner.args.get("from")
    if from_ is None or not isinstance(from_.this, exp.Table) or not isinstance(from_.this.this, exp.Identifier):
        raise NotSigned("an aggregated derived table over anything but one table")
    if any(isinstance(n, (exp.Subquery, exp.Exists, exp.Window)) for n in inner.walk() if n is not inner):
        raise NotSigned("an aggregated derived table with a subquery or window")
    group = inner.args.get("group")
    if group is not None and (group.args.get("all") or group.args.get("rollup") or group.args.get("cube")):
        raise NotSigned("an aggregated derived table with GROUP BY ALL, ROLLUP or CUBE")
    groups = group.expressions if group is not None else []
    names = group_names(inner)
    if len(names) != len(groups):
        raise NotSigned("an aggregated derived table with a GROUP BY expression it does not output")
    aggregates = aggregates_of(inner)
    for aggregate in aggregates:
        if aggregate.distinct:
            raise NotSigned(f"{aggregate.node.sql()} in a derived table: its value is not a sum of rows")
        if aggregate.kind not in ("count", "sum"):
            raise NotSigned(
                f"{aggregate.node.sql()} in a derived table: its value before the change is not a sum of rows"
            )
    having = inner.args.get("having")
    for root in [
        *(s.unalias() for s in inner.selects if s.alias_or_name.lower() not in names),
        *([having.this] if having else []),
    ]:
        _outside_aggregates(root, aggregates, list(groups))


def _aggregated_selects(top: exp.Select) -> list[exp.Select]:
    return [
        item.this
        for item in top.find_all(exp.Subquery)
        if isinstance(item.parent, (exp.From, exp.Join))
        and isinstance(item.this, exp.Select)
        and is_aggregated(item.this)
    ]


def _outside_aggregates(root: exp.Expr, aggregates: list[Aggregate], groups: list[exp.Expr]) -> None:
    """Outside its aggregate calls, an output column may read only group expressions."""
    stack = [root]
    while stack:
        node = stack.pop()
        if any(node == a.node for a in aggregates) or any(node == g for g in groups):
            continue
        if isinstance(node, exp.Column):
            raise NotSigned(f"column {node.sql()} is neither a group key nor inside an aggregate")
        if isinstance(node, (exp.Subquery, exp.Query)):
            raise NotSigned("a subquery over the groups")
        stack.extend(node.iter_expressions())


def _exact(argument: exp.Expr) -> bool:
    data_type = argument.type
    if data_type is None or data_type.is_type(exp.DataType.Type.UNKNOWN, exp.DataType.Type.NULL):
        return False
    return not data_type.is_type(*INEXACT)


def check_signed(
    top: exp.Query,
    key: list[str],
    unique: bool,
    schema: Schema | None,
    dialect: DialectType,
    partitioned: bool = False,
) -> None:
    """Raise ``NotSigned`` with the reason unless ``top`` (inlined, qualified) has a signed-delta
    form. ``partitioned``: its FROM and WHERE are evaluated whole, before and after the change,
    per touched partition (``analysis/partition.py``), so only its own aggregates must fold."""
    if not isinstance(top, exp.Select):
        raise NotSigned("not a single SELECT")
    group = top.args.get("group")
    if group is None and key:
        raise NotSigned("no GROUP BY")
    if group is not None and (
        not unique or group.args.get("all") or group.args.get("rollup") or group.args.get("cube")
    ):
        raise NotSigned("every GROUP BY expression must be an output column")
    for name in ("qualify", "distinct", "limit", "offset"):
        if top.args.get(name):
            raise NotSigned(f"{name.upper()} over the groups")
    if any(isinstance(n, exp.Window) for s in top.selects for n in _own(s)):
        raise NotSigned("a window over the groups")
    if not partitioned:
        _check_from(top)
    aggregates = aggregates_of(top)
    if not aggregates:
        raise NotSigned("no aggregate")
    groups = [s.unalias() for s in top.selects if s.alias_or_name.lower() in key]
    having = top.args.get("having")
    for root in [
        *(s.unalias() for s in top.selects if s.alias_or_name.lower() not in key),
        *([having.this] if having else []),
    ]:
        _outside_aggregates(root, aggregates, groups)
    typed = annotate_types(top.copy(), schema=schema, dialect=dialect) if schema is not None else None
    if typed is None:
        raise NotSigned("input column types unknown")
    assert isinstance(typed, exp.Select)
    typed_aggregates = aggregates_of(typed)
    if not partitioned:
        typed_aggregates += [a for inner in _aggregated_selects(typed) for a in aggregates_of(inner)]
    for aggregate in typed_aggregates:
        if aggregate.kind in ("sum", "avg") and aggregate.argument is not None and not _exact(aggregate.argument):
            raise NotSigned(f"{aggregate.node.sql()}: a sum of floating-point values depends on the order of the rows")
        data_type = aggregate.argument.type if aggregate.argument is not None else None
        if aggregate.kind == "avg" and (data_type is None or not data_type.is_type(*AVG_FROM_SUM_AND_COUNT)):
            raise NotSigned(
                f"{aggregate.node.sql()} of {data_type.sql() if data_type else 'unknown type'}: the warehouse "
                "divides its sum in extended "
                "precision, which a stored sum and count do not reproduce to the last bit"
            )
