"""The signed change of a partitioned model (``analysis/partition.py``): per touched
partition, the scope's rows as they are now (+1) less the same rows over the inputs as they
were before the change (-1), folded into the groups' partials (``signed_aggregates.py``).

Both branches are the model's own SQL with its scope filtered on ``K IN (touched keys)``:
the subqueries, LEFT JOINs and inner aggregates inside are evaluated by the warehouse over
the rows of the touched partitions, now and before, so no value has to be rebuilt from
partial sums (an AVG of DECIMAL, NOT EXISTS and ``<>`` correlations alike). In the branch
before the change, each changed table is replaced by its rows as they were in the touched
partitions (``rows_before``, a scratch table).

The touched keys are the partition columns of every changed anchored table over its change
(old and new images): a partition no changed row falls in has the same rows now and before,
and its branches would cancel. Only the changed rows that pass the conditions of the table's
own columns where it is read count, and only such rows are copied into the scratch tables
(``own_filter``): TPC-H Q20's lineitem changes touch the suppliers of its 1994 lines alone.

A row-level model (no aggregate: TPC-H Q20) has no groups to fold: its affected keys are the
output keys of its rows in the touched partitions now and before (``build_partition_keys``),
whose rows the keyed strategies recompute and replace.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.analysis.inline_ctes import alias_identifier
from sqlorch.analysis.partition import Partition, find_partition, own_conjuncts
from sqlorch.analysis.signed_shape import aggregates_of
from sqlorch.execution.statements import union_all
from sqlorch.planning.key_match import null_safe_equal
from sqlorch.planning.rewrites.signed_aggregates import WEIGHT, aggregating, combine_branches

TOUCHED = "_sqlorch_pk"
NET = "_sqlorch_net"
NUMBER = "_sqlorch_rn"

JOINED = "_sqlorch_tp"
# the table of a changed table's rows (now, or before the change) in the touched partitions, by its column
Before = Callable[[exp.Table, str], exp.Table]


def partition_of(top: exp.Select, is_changed: Callable[[exp.Table], bool]) -> Partition:
    """The partition of ``top`` (a copy the caller may change) that anchors every changed table."""
    partition = find_partition(top, [t for t in top.find_all(exp.Table) if is_changed(t)])
    assert partition is not None  # planner: the strategy applies only to changes it anchors
    return partition


def in_touched(value: exp.Expr, touched: exp.Table) -> exp.Exists:
    """``value`` is a touched key, NULL included: a changed row with a NULL partition column
    changes the scope's rows whose K is NULL (a table read whole, K its own column)."""
    match = null_safe_equal([(exp.column(TOUCHED, quoted=True), value)], any_types=True)
    return exp.Exists(this=exp.select(exp.Literal.number(1)).from_(touched.copy()).where(match))


def rows_in_touched(rows: exp.Select, value: exp.Expr, touched: exp.Table, by_index: bool) -> exp.Query:
    """``rows`` (of one table) whose ``value`` is a touched key, NULL included (``in_touched``).

    ``by_index`` (Postgres): the rows whose value is ``IN`` the touched keys, and apart, the
    rows whose value is NULL if a touched key is. The two are disjoint, so their ``UNION
    ALL`` is the same multiset, and ``IN`` compares with ``=``, the operator ``IS NOT
    DISTINCT FROM`` uses, so values of two types pair as before. Postgres can join ``IN``
    through an index on the column and reads the few partitions' rows of a large source
    where that costs less than a scan (TPC-H Q21's touched orders in ``raw.lineitem``,
    bench/RESULTS.md ``tpch_postgres``), where ``in_touched``'s form can only be hashed
    against the whole table; the NULL branch's test of the keys runs once, before its
    scan: without a NULL key the table is not read there."""
    if not by_index:
        return rows.where(in_touched(value, touched))
    key = exp.column(TOUCHED, quoted=True)
    matched = rows.copy().where(value.copy().isin(query=exp.select(key).from_(touched.copy())))
    null_key = exp.Exists(
        this=exp.select(exp.Literal.number(1)).from_(touched.copy()).where(key.copy().is_(exp.null()))
    )
    nulls = rows.copy().where(exp.and_(value.copy().is_(exp.null()), null_key))
    return exp.union(matched, nulls, distinct=False)


def own_filter(tables: list[exp.Table], alias: str) -> exp.Expr | None:
    """The rows of one table that any of its occurrences ``tables`` can read, by their own
    conditions (``partition.own_conjuncts``), its columns read as ``alias``; None: all of them."""
    filters: dict[str, exp.Expr] = {}
    for table in tables:
        found = own_conjuncts(table)
        if not found:
            return None
        condition = exp.and_(*(c.copy() for c in found))
        for column in condition.find_all(exp.Column):
            column.set("table", exp.to_identifier(alias))
        filters.setdefault(condition.sql(), condition)
    return exp.or_(*filters.values()) if filters else None


def build_touched(
    top: exp.Select, is_changed: Callable[[exp.Table], bool], change_of: Callable[[exp.Table], exp.Select]
) -> exp.Query:
    """The partition keys the change touches, one column ``_sqlorch_pk``. ``change_of``: a
    table's change (old and new images) with its rows' columns, read as ``c``."""
    partition = partition_of(top.copy(), is_changed)
    occurrences: dict[tuple[str, str], list[exp.Table]] = {}
    for anchor in partition.anchors:  # a table read under two aliases: its change once
        if is_changed(anchor.table):
            occurrences.setdefault((exp.table_name(anchor.table), anchor.column), []).append(anchor.table)
    parts: list[exp.Select] = []
    for (_, name), tables in occurrences.items():
        column = exp.alias_(exp.column(name, table="c", quoted=True), TOUCHED, quoted=True)
        change = change_of(tables[0])
        condition = own_filter(tables, "c")  # a changed row no occurrence reads touches nothing
        if condition is not None:
            change = change.where(condition)
        change.set("expressions", [column])
        parts.append(change)
    return exp.select(exp.column(TOUCHED, quoted=True)).from_(union_all(parts).subquery("t")).distinct()


def rows_before(now: exp.Select, change: exp.Select, columns: list[str]) -> exp.Select:
    """A table's rows before the change, as a multiset, from its rows ``now`` and its
    ``change`` (both restricted to the same partitions, each row with its ``_sqlorch_w``:
    +1 for a row now and an old image, -1 for a new image). Per distinct row, the weights
    add up to the times it was there before (the change telescopes over its batches), and
    as many of its positively weighted copies are kept: exact for any table, keyed or not.
    Both window values share one partitioning and order (the positive copies first), so the
    warehouse sorts the rows once: two windows over different partitions took 1.5x as long
    (TPC-H Q17's 378K rows of touched parts)."""
    union = exp.union(now, change, distinct=False).subquery("u")
    partition = [exp.column(c, table="u", quoted=True) for c in columns]
    weight = exp.column(WEIGHT, table="u", quoted=True)

    def window(function: exp.Expr, spec: exp.WindowSpec | None = None) -> exp.Window:
        order = exp.Order(expressions=[exp.Ordered(this=weight.copy(), desc=True)])
        return exp.Window(this=function, partition_by=[c.copy() for c in partition], order=order, spec=spec)

    whole = exp.WindowSpec(
        kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="UNBOUNDED", end_side="FOLLOWING"
    )
    net = window(exp.func("sum", weight.copy()), whole)
    numbered = exp.select(
        *partition,
        weight,
        exp.alias_(net, NET, quoted=True),
        exp.alias_(window(exp.RowNumber()), NUMBER, quoted=True),
    ).from_(union)
    v = "v"
    return (
        exp.select(*[exp.column(c, table=v, quoted=True) for c in columns])
        .from_(numbered.subquery(v))
        .where(exp.GT(this=exp.column(WEIGHT, table=v, quoted=True), expression=exp.Literal.number(0)))
        .where(exp.LTE(this=exp.column(NUMBER, table=v, quoted=True), expression=exp.column(NET, table=v, quoted=True)))
    )


def build_partition_delta(
    top: exp.Select,
    key: list[str],
    is_changed: Callable[[exp.Table], bool],
    now: Before,
    before: Before,
    touched: exp.Table,
) -> exp.Select:
    """Per group touched by the change, the change of every partial (as ``build_delta``)."""
    aggregates = aggregates_of(top)
    branches: list[exp.Query] = [
        aggregating(_in_partitions(top, is_changed, then, touched), top, key, aggregates, exp.Literal.number(sign))
        for sign, then in ((1, now), (-1, before))
    ]
    return combine_branches(branches, key, aggregates)


def build_partition_keys(
    top: exp.Select,
    key: list[str],
    is_changed: Callable[[exp.Table], bool],
    now: Before,
    before: Before,
    touched: exp.Table,
) -> exp.Query:
    """The output keys of a row-level model's rows in the touched partitions, now and before
    the change: the keys whose rows the change can add, remove or alter (its key columns are
    anchors, ``analysis/keys.py``, so recomputing them gives exactly their rows)."""
    branches = []
    for rows in (now, before):
        copy = _in_partitions(top, is_changed, rows, touched)
        names = {s.alias_or_name.lower(): s.unalias() for s in copy.selects}
        copy.set("expressions", [exp.alias_(names[name].copy(), name, quoted=True) for name in key])
        copy.set("order", None)  # a branch of a UNION (a LIMIT has no key: ``analysis/keys.py``)
        branches.append(copy)
    return exp.union(branches[0], branches[1], distinct=True)


def changed_anchors(top: exp.Select, is_changed: Callable[[exp.Table], bool]) -> list[tuple[exp.Table, str]]:
    """The changed tables the partition reads, with their partition columns: what the branch
    before the change reads from ``Before``'s tables."""
    return [(a.table, a.column) for a in partition_of(top.copy(), is_changed).anchors if is_changed(a.table)]


def read_columns(top: exp.Select, tables: list[exp.Table], available: list[str]) -> list[str]:
    """The columns of ``tables`` (the occurrences of one table) that ``top`` reads, in the
    table's order; all of them where a ``*`` could read them (not ``EXISTS (SELECT * ..)``,
    not ``COUNT(*)``). A projection is exact: the rows before the change are rebuilt by
    multiset (``rows_before``), and scratch tables of TPC-H Q17's three lineitem columns
    instead of its sixteen are built in a fraction of the time."""
    for star in top.find_all(exp.Star):
        owner = star.parent.parent if isinstance(star.parent, exp.Column) else star.parent
        if isinstance(owner, exp.Select) and not isinstance(owner.parent, exp.Exists):
            return list(available)
    aliases = {t.alias_or_name.lower() for t in tables}
    names = {
        c.name.lower() for c in top.find_all(exp.Column) if c.table.lower() in aliases and not _exists_projection(c)
    }
    return [c for c in available if c.lower() in names]


def _exists_projection(column: exp.Column) -> bool:
    """A column ``EXISTS (SELECT ..)`` projects (its ``*``, expanded when qualified): unread."""
    node: exp.Expr = column.parent if isinstance(column.parent, exp.Alias) else column
    owner = node.parent
    return (
        isinstance(owner, exp.Select)
        and isinstance(owner.parent, exp.Exists)
        and any(e is node for e in owner.expressions)
    )


def _in_partitions(
    top: exp.Select, is_changed: Callable[[exp.Table], bool], rows: Before, touched: exp.Table
) -> exp.Select:
    """A copy of ``top`` over the touched partitions, its changed tables read from ``rows``.

    The scope meets the touched keys in a join: DuckDB planned TPC-H Q21 with ``K IN (SELECT
    ...)`` in its WHERE into a blow-up (over 30 s and out of memory at sf 1, against 0.08 s
    joined), and any table wrapped in a derived table inside its correlated subqueries alike;
    the changed tables' rows in the touched partitions are plain tables for the same reason
    (which also reads a changed table once per step, not once per branch and occurrence)."""
    copy = top.copy()
    partition = partition_of(copy, is_changed)
    scope = partition.scope
    if any(s.is_star for s in scope.selects):  # a joined table would add its column to the star
        scope.where(in_touched(partition.key.copy(), touched), copy=False)
    else:
        joined = touched.copy()
        joined.set("alias", exp.TableAlias(this=exp.to_identifier(JOINED, quoted=True)))
        scope.join(joined, join_type="cross", copy=False)
        scope.where(
            null_safe_equal([(exp.column(TOUCHED, table=JOINED, quoted=True), partition.key.copy())], any_types=True),
            copy=False,
        )
    for exists in copy.find_all(exp.Exists):  # its rows count, not its columns (``read_columns``)
        if isinstance(exists.this, exp.Select):
            exists.this.set("expressions", [exp.Literal.number(1)])
    for anchor in partition.anchors:
        table = anchor.table
        if is_changed(table):
            replacement = rows(table, anchor.column)
            replacement.set("alias", exp.TableAlias(this=alias_identifier(table)))
            table.replace(replacement)
    return copy
