"""Window chains whose partitions can be extended at their ends (``planning/rewrites/
window_tails.py``): a chain of SELECTs, each reading the one below, the lowest one table, with
windows over one partition and one order, and a GROUP BY on top that keeps the partition.

An event stream mostly changes by rows appended at the end of their partition (a user's new
events come after the old ones). There the window values of the old rows stay as they are,
and a new row's values need only a bounded carry per partition, its *tail*: for ``lag(x)``
the last row's ``x``, for a running ``SUM``/``COUNT``/``row_number()`` its value at the last
row. Taken here, because each is exact from that carry alone:

- ``lag(x)`` / ``lag(x, 1)`` without a default, ``x`` one of the order columns: on ties at the
  tail every tied row has the same ``x``, so the first new row's value does not depend on
  which of them the engine put last;
- ``SUM`` of an integer literal or of a CASE whose every branch (ELSE included) is one: never
  NULL, added exactly; ``COUNT(x)``, ``COUNT(*)``: frame ``ROWS`` or ``RANGE`` from UNBOUNDED
  PRECEDING to CURRENT ROW, or none (the default ``RANGE`` frame: a new row's order key is
  checked above the tail's and unique among the new rows, so its peers are itself);
- ``row_number()``: the running count of rows.

The GROUP BY on top reads plain columns and MIN/MAX/COUNT/SUM of plain columns (a SUM over
an input column of an integer or decimal type: a float's sum depends on the order it is
added in), so the new rows' groups fold into the stored ones. No WHERE, join, DISTINCT,
subquery or non-deterministic function anywhere in the chain: every input row of a partition
reaches its windows. Anything else is left to the other strategies, with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.schema import Schema

NOT_TAILED = "window tails: "  # the prefix of every reason a shape is not taken
PREFIX = "_sqlorch_"  # names the rewrite adds; a model column may not start with it

RUNNING_FRAMES = {"rows", "range"}
_GROUP_AGGREGATES: dict[type[exp.Expr], str] = {exp.Min: "min", exp.Max: "max", exp.Count: "count", exp.Sum: "sum"}
_EXACT_TYPES = {
    exp.DataType.Type.TINYINT,
    exp.DataType.Type.SMALLINT,
    exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT,
    exp.DataType.Type.INT128,
    exp.DataType.Type.UTINYINT,
    exp.DataType.Type.USMALLINT,
    exp.DataType.Type.UINT,
    exp.DataType.Type.UBIGINT,
    exp.DataType.Type.DECIMAL,
}


class NotTailed(Exception):
    """The chain has a shape whose tails would not be exact; the text says why."""


@dataclass(frozen=True)
class WindowTails:
    """A window chain maintained by extending its partitions: the input table (schema, name,
    lower case), its columns the chain reads, the partition and order columns (input columns),
    the number of running windows kept per tail, the GROUP BY's output columns and the
    aggregate kind of every other output column."""

    query: exp.Select  # the chain (qualified, CTEs inlined)
    table: tuple[str, str]
    columns: tuple[str, ...]
    partition: tuple[str, ...]
    order: tuple[str, ...]
    running: int
    group: tuple[str, ...]
    kinds: dict[str, str] = field(default_factory=dict)
    partition_outputs: tuple[str, ...] = ()  # the output columns that are the partition columns


def chain(top: exp.Select) -> list[exp.Select]:
    """The SELECTs from the one reading the table (level 0) up to ``top``."""
    levels = [top]
    while True:
        source = _from(levels[-1])
        if not isinstance(source, exp.Subquery):
            return list(reversed(levels))
        if not isinstance(source.this, exp.Select):
            raise NotTailed(f"{NOT_TAILED}a set operation in the chain")
        levels.append(source.this)


def _from(select: exp.Select) -> exp.Expr | None:
    from_ = select.args.get("from_") or select.args.get("from")
    return from_.this if from_ is not None else None


def from_alias(select: exp.Select) -> str:
    source = _from(select)
    assert source is not None
    return source.alias_or_name


def windows(select: exp.Select) -> Iterator[exp.Window]:
    """The select's windows, in a fixed order: the order their kept values are numbered in."""
    for projection in select.selects:
        yield from projection.find_all(exp.Window)


def running(window: exp.Window) -> bool:
    return not isinstance(window.this, exp.Lag)


def _plain(select: exp.Select, is_top: bool) -> None:
    for arg in ("joins", "where", "having", "qualify", "distinct", "order", "limit", "offset", "laterals", "with"):
        if select.args.get(arg):
            raise NotTailed(f"{NOT_TAILED}{arg.upper()} in the window chain")
    if not is_top and select.args.get("group"):
        raise NotTailed(f"{NOT_TAILED}a GROUP BY below the windows")
    source = _from(select)
    if not isinstance(source, (exp.Subquery, exp.Table)) or not source.alias_or_name:
        raise NotTailed(f"{NOT_TAILED}no FROM table")
    if isinstance(source, exp.Table) and not isinstance(source.this, exp.Identifier):
        raise NotTailed(f"{NOT_TAILED}a table function")
    for projection in select.selects:
        for node in projection.walk():
            if isinstance(node, (exp.Subquery, exp.Exists, exp.Query)) or (
                isinstance(node, exp.In) and node.args.get("query") is not None
            ):
                raise NotTailed(f"{NOT_TAILED}a subquery expression")
            if isinstance(node, (exp.Rand, exp.Uuid, exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)) or (
                isinstance(node, exp.Anonymous) and str(node.this).lower() in {"random", "uuid", "now", "setseed"}
            ):
                raise NotTailed(f"{NOT_TAILED}a non-deterministic function")
            if isinstance(node, exp.Column) and node.table != source.alias_or_name:
                raise NotTailed(f"{NOT_TAILED}a column of another query")
            if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
                raise NotTailed(f"{NOT_TAILED}a * in the chain")


class _Tracer:
    """Where each level's columns come from: an input column passed through unchanged, or not."""

    def __init__(self, levels: list[exp.Select]) -> None:
        self.levels = levels

    def input_column(self, level: int, column: exp.Expr) -> str | None:
        if not isinstance(column, exp.Column):
            return None
        if level == 0:
            return column.name.lower()
        below = self.levels[level - 1]
        for projection in below.selects:
            if projection.alias_or_name.lower() == column.name.lower():
                return self.input_column(level - 1, projection.unalias())
        return None


def _integer_literal(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) and node.is_int


def _exact_sum_argument(node: exp.Expr) -> bool:
    """Never NULL and added exactly: an integer literal, or a CASE of integer literals with an ELSE."""
    if _integer_literal(node):
        return True
    if not isinstance(node, exp.Case) or node.args.get("this") is not None:
        return False
    default = node.args.get("default")
    return (
        default is not None
        and _integer_literal(default)
        and all(_integer_literal(i.args["true"]) for i in node.args["ifs"])
    )


def _check_window(window: exp.Window, level: int, tracer: _Tracer) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The window's partition and order columns (input columns), if its function is one whose
    tail is exact (the module's docstring)."""
    if window.args.get("alias") or window.args.get("first") is not None:
        raise NotTailed(f"{NOT_TAILED}a named window")
    partition = []
    for column in window.args.get("partition_by") or []:
        name = tracer.input_column(level, column)
        if name is None:
            raise NotTailed(f"{NOT_TAILED}a window partitioned by an expression")
        partition.append(name)
    order_node = window.args.get("order")
    order = []
    for ordered in order_node.expressions if order_node is not None else []:
        name = tracer.input_column(level, ordered.this)
        if name is None or ordered.args.get("desc"):
            raise NotTailed(f"{NOT_TAILED}a window ordered by an expression or descending")
        order.append(name)
    if not partition or not order:
        raise NotTailed(f"{NOT_TAILED}a window without PARTITION BY and ORDER BY")
    function, spec = window.this, window.args.get("spec")
    if isinstance(function, exp.Lag):
        offset = function.args.get("offset")
        if spec is not None or function.args.get("default") is not None:
            raise NotTailed(f"{NOT_TAILED}lag with a frame or a default")
        if offset is not None and not (isinstance(offset, exp.Literal) and offset.is_int and int(offset.name) == 1):
            raise NotTailed(f"{NOT_TAILED}lag by more than one row")
        if tracer.input_column(level, function.this) not in order:
            raise NotTailed(f"{NOT_TAILED}lag of a column that is not an order column (ties at the end)")
    elif isinstance(function, exp.RowNumber):
        if spec is not None:
            raise NotTailed(f"{NOT_TAILED}row_number with a frame")
    elif isinstance(function, (exp.Sum, exp.Count)):
        argument = function.this
        if isinstance(argument, exp.Distinct) or (isinstance(function, exp.Sum) and not _exact_sum_argument(argument)):
            raise NotTailed(f"{NOT_TAILED}a running SUM of other than integer literals, or DISTINCT")
        if spec is not None and not (
            str(spec.args.get("kind", "")).lower() in RUNNING_FRAMES
            and str(spec.args.get("start", "")).upper() == "UNBOUNDED"
            and str(spec.args.get("start_side", "")).lower() == "preceding"
            and str(spec.args.get("end", "")).upper() == "CURRENT ROW"
            and not spec.args.get("exclude")
        ):
            raise NotTailed(f"{NOT_TAILED}a frame other than UNBOUNDED PRECEDING to CURRENT ROW")
    else:
        raise NotTailed(f"{NOT_TAILED}window function {function.key} has no bounded carry")
    for node in function.walk():
        if node is not function and isinstance(node, (exp.AggFunc, exp.Window)):
            raise NotTailed(f"{NOT_TAILED}a nested aggregate or window")
    return tuple(partition), tuple(order)


def window_tails(query: exp.Query | None, schema: Schema | None, dialect: str = "duckdb") -> WindowTails:
    """The chain's tails description, or ``NotTailed`` with the reason."""
    if not isinstance(query, exp.Select) or query.args.get("group") is None:
        raise NotTailed(f"{NOT_TAILED}no GROUP BY over the windows")
    levels = chain(query)
    if len(levels) < 2:
        raise NotTailed(f"{NOT_TAILED}no window below the GROUP BY")
    tracer = _Tracer(levels)
    table = _from(levels[0])
    assert isinstance(table, exp.Table)
    shape: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()
    count = 0
    for level, select in enumerate(levels):
        _plain(select, select is query)
        for projection in select.selects:
            if projection.alias_or_name.lower().startswith(PREFIX):
                raise NotTailed(f"{NOT_TAILED}a column named {PREFIX}...")
        if select is query:
            break
        for projection in select.selects:
            for node in projection.walk():
                if isinstance(node, exp.AggFunc) and not isinstance(node.parent, exp.Window):
                    raise NotTailed(f"{NOT_TAILED}an aggregate outside a window")
        for window in windows(select):
            shape.add(_check_window(window, level, tracer))
            count += running(window)
    if len(shape) != 1 or not count:
        raise NotTailed(f"{NOT_TAILED}windows over more than one partition and order, or no running one")
    ((partition, order),) = shape
    group, kinds, outputs = _groups(query, len(levels) - 1, tracer, partition, table, schema, dialect)
    columns = sorted({c.name.lower() for p in levels[0].selects for c in p.find_all(exp.Column)})
    return WindowTails(
        query=query,
        table=(table.db.lower(), table.name.lower()),
        columns=tuple(columns),
        partition=partition,
        order=order,
        running=count,
        group=group,
        kinds=kinds,
        partition_outputs=outputs,
    )


def _groups(
    top: exp.Select,
    level: int,
    tracer: _Tracer,
    partition: tuple[str, ...],
    table: exp.Table,
    schema: Schema | None,
    dialect: str,
) -> tuple[tuple[str, ...], dict[str, str], tuple[str, ...]]:
    """The GROUP BY's output columns, the other columns' aggregate kinds, and the output
    columns holding the partition columns (in the partition's order)."""
    grouped = [g for g in top.args["group"].expressions]
    if not all(isinstance(g, exp.Column) for g in grouped):
        raise NotTailed(f"{NOT_TAILED}a GROUP BY of expressions")
    group: list[str] = []
    kinds: dict[str, str] = {}
    by_input: dict[str, str] = {}
    for projection in top.selects:
        name, value = projection.alias_or_name.lower(), projection.unalias()
        if isinstance(value, exp.Column) and any(value == g for g in grouped):
            group.append(name)
            source = tracer.input_column(level, value)
            if source is not None:
                by_input.setdefault(source, name)
            continue
        kind = _GROUP_AGGREGATES.get(type(value))
        argument = value.this if kind else None
        if kind is None or isinstance(argument, exp.Distinct) or not isinstance(argument, (exp.Column, exp.Star)):
            raise NotTailed(f"{NOT_TAILED}an output column that is not a group column or MIN/MAX/COUNT/SUM of a column")
        if kind == "sum" and not _exact_type(tracer.input_column(level, argument), table, schema, dialect):
            raise NotTailed(f"{NOT_TAILED}a SUM over a column not of an integer or decimal input column")
        kinds[name] = kind
    if len(group) != len(grouped) or any(p not in by_input for p in partition):
        raise NotTailed(f"{NOT_TAILED}the GROUP BY does not output every group and partition column")
    return tuple(group), kinds, tuple(by_input[p] for p in partition)


def _exact_type(column: str | None, table: exp.Table, schema: Schema | None, dialect: str) -> bool:
    if column is None or schema is None:
        return False
    try:
        kind = schema.get_column_type(table, exp.column(column), dialect=dialect)
    except Exception:  # noqa: BLE001 - an unknown table or column: not known to be exact
        return False
    return kind is not None and kind.this in _EXACT_TYPES
