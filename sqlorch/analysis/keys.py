"""Output keys: which output columns partition a model so it can be recomputed by parts.

A column is an *anchor* when every input row that an output row depends on carries the
same value for it: base-table columns, group keys, window partition keys, and row-level
expressions over anchors. Recomputing a model restricted to some anchor values gives
exactly the output rows with those values, and the keys an input change affects are found
by evaluating the anchors over the changed rows (see ``planning/rewrites``). Aggregates
and window values are never anchors: they depend on rows other than the changed ones.

The key does not need to be unique: it is a partition of the output, replaced whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.dialect import DialectType
from sqlglot.schema import Schema

from sqlorch.analysis.decorrelate import NotDecorrelated, decorrelate
from sqlorch.analysis.inline_ctes import RecursiveCTE, inline_ctes
from sqlorch.analysis.kept_aggregates import KeptAggregate, kept_aggregates, tables_read_only_inside
from sqlorch.analysis.partition import partition_tables
from sqlorch.analysis.signed_shape import NotSigned, aggregates_of, check_signed
from sqlorch.analysis.window_tails import NotTailed, WindowTails, window_tails

NON_DETERMINISTIC = (exp.Rand, exp.Uuid, exp.CurrentTimestamp, exp.CurrentDate, exp.CurrentTime)
NON_DETERMINISTIC_NAMES = {"random", "uuid", "gen_random_uuid", "now", "setseed", "current_localtimestamp"}


class NoKey(Exception):
    """The model has a shape the planner cannot maintain incrementally; the text says why."""


@dataclass
class KeyAnalysis:
    key: list[str] | None
    reason: str = ""
    global_aggregate: bool = False
    subquery_tables: set[tuple[str, str]] = field(default_factory=set)  # (schema, name) read inside expressions
    inlined: exp.Query | None = None
    unique: bool = False  # at most one output row per key value: the key can drive a MERGE
    row_preserving: bool = False  # every output row comes from one combination of input rows
    nullable_tables: set[tuple[str, str]] = field(default_factory=set)  # read on a LEFT JOIN's nullable side
    occurrences: dict[tuple[str, str], int] = field(default_factory=dict)  # times each table is read
    # output column -> count | sum | min | max, when new rows can be folded into old groups
    distributive: dict[str, str] | None = None
    # why the groups cannot be maintained from signed deltas ("" when they can: signed_shape.py)
    not_signed: str = "not analysed"
    # the partitioned signed form (analysis/partition.py): per partition its key and the tables
    # whose changes it follows. Where the form above is none, or a decorrelation of subquery
    # expressions: the query as written (``written``) read per touched partition reads each
    # anchored table once, where the decorrelated delta rule reads it once per branch (TPC-H
    # Q18's lineitem: five scans), so it is taken wherever one partition anchors the changes
    partitions: list[tuple[str, frozenset[tuple[str, str]]]] = field(default_factory=list)
    written: exp.Query | None = None
    # why the key is no anchor key ("" when it is): only the partitioned form may maintain it
    unanchored: str = ""
    # a row-level model's partitions, as ``partitions``: its affected keys are those of its rows
    # in the touched partitions, now and before (``signed_statements.partition_key_statements``)
    row_partitions: list[tuple[str, frozenset[tuple[str, str]]]] = field(default_factory=list)
    # the FROM table whose identity keys a row-level model (``identity``: its columns, passed
    # through as the key), where that table's change log holds every row of each key it
    # touches: the rows of a key come from that table's rows of the key (and their partners
    # in joins), so they follow from its images (``rewrites/map_changed_rows.py``)
    identity_table: tuple[str, str] | None = None
    identity: tuple[str, ...] = ()
    # the model's own change log holds every row of each key it touches, whichever strategy
    # wrote it: a key holds one row (unique), or the model reads one table keyed by its
    # identity (no join: its incremental form maps whole keys; a rebuild diffs whole keys)
    whole_key_log: bool = False
    # aggregated derived tables kept as group state where a changed input is read in a
    # subquery expression no other form follows (``analysis/kept_aggregates.py``), and the
    # tables read only inside them
    kept: list[KeptAggregate] = field(default_factory=list)
    kept_tables: frozenset[tuple[str, str]] = frozenset()
    # a window chain whose partitions are extended at their ends (``analysis/window_tails.py``),
    # else why not
    tails: WindowTails | None = None
    not_tailed: str = "not analysed"


def own_nodes(root: exp.Expr) -> Iterator[exp.Expr]:
    """Nodes of one SELECT's own scope: nested queries are not entered."""
    yield from root.walk(prune=lambda n: n is not root and isinstance(n, (exp.Subquery, exp.Query)))


def _sources(select: exp.Select) -> dict[str, exp.Expr]:
    found: dict[str, exp.Expr] = {}
    from_ = select.args.get("from_") or select.args.get("from")
    items = [from_.this] if from_ else []
    items += [join.this for join in select.args.get("joins") or []]
    for item in items:
        found[item.alias_or_name.lower()] = item
    return found


def _is_nondeterministic(node: exp.Expr) -> bool:
    if isinstance(node, NON_DETERMINISTIC):
        return True
    return isinstance(node, exp.Anonymous) and str(node.this).lower() in NON_DETERMINISTIC_NAMES


def anchors(query: exp.Expr) -> list[bool]:
    """Per output position, whether that column is an anchor (raises NoKey on shapes
    whose row dependencies cannot be tracked)."""
    if isinstance(query, exp.Subquery):
        return anchors(query.this)
    if isinstance(query, exp.Union):
        left, right = anchors(query.left), anchors(query.right)
        return [a and b for a, b in zip(left, right, strict=False)]
    if isinstance(query, (exp.Except, exp.Intersect)):
        raise NoKey("EXCEPT/INTERSECT: a change on one side can remove rows of the other")
    if not isinstance(query, exp.Select):
        raise NoKey(f"unsupported query shape {query.key}")
    sources = _sources(query)
    source_anchors: dict[str, list[bool]] = {}
    source_names: dict[str, list[str]] = {}
    for alias, source in sources.items():
        if isinstance(source, exp.Subquery):
            source_anchors[alias] = anchors(source.this)
            source_names[alias] = [s.alias_or_name.lower() for s in source.this.selects]

    def column_is_anchor(column: exp.Column) -> bool:
        alias = column.table.lower()
        if alias not in source_anchors:
            return True  # a base table (or an outer, correlated reference)
        names = source_names[alias]
        name = column.name.lower()
        return name in names and source_anchors[alias][names.index(name)]

    def columns_are_anchors(expression: exp.Expr) -> bool:
        return all(column_is_anchor(c) for c in own_nodes(expression) if isinstance(c, exp.Column))

    for join in query.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None and not columns_are_anchors(on):
            raise NoKey("a join condition compares an aggregate or window value")
        if join.side in ("FULL", "RIGHT"):
            raise NoKey(f"{join.side} OUTER JOIN (write a RIGHT JOIN as a LEFT JOIN to keep it incremental)")

    group = query.args.get("group")
    group_exprs = list(group.expressions) if group else []
    if group is not None and group.args.get("all"):
        group_exprs = [s.unalias() for s in query.selects if not any(isinstance(n, exp.AggFunc) for n in own_nodes(s))]
    windows = [node for node in own_nodes(query) if isinstance(node, exp.Window)]
    partitions: list[exp.Expr] | None = None
    for window in windows:
        these = list(window.args.get("partition_by") or [])
        partitions = these if partitions is None else [p for p in partitions if p in these]
    has_agg = any(
        isinstance(n, exp.AggFunc)
        for s in query.selects
        for n in own_nodes(s)
        if not any(isinstance(a, exp.Window) for a in _ancestors(n, s))
    )

    result: list[bool] = []
    for projection in query.selects:
        expression = projection.unalias()
        ok = columns_are_anchors(expression) and not any(
            isinstance(n, (exp.AggFunc, exp.Window)) or _is_nondeterministic(n) for n in own_nodes(expression)
        )
        if group_exprs:
            ok = ok and expression in group_exprs
        elif has_agg:
            ok = False
        if partitions is not None:
            ok = ok and expression in partitions
        result.append(ok)
    return result


def _ancestors(node: exp.Expr, stop: exp.Expr) -> Iterator[exp.Expr]:
    parent = node.parent
    while parent is not None and parent is not stop:
        yield parent
        parent = parent.parent


def _whole_query_reason(query: exp.Query) -> str | None:
    for node in query.walk():
        if isinstance(node, (exp.Limit, exp.Offset, exp.Fetch)):
            return "ORDER BY ... LIMIT: which rows are kept depends on every other row"
        if _is_nondeterministic(node):
            return f"non-deterministic function {node.sql()}"
        if isinstance(node, exp.Join) and node.side == "FULL":
            return "FULL OUTER JOIN"
        if isinstance(node, (exp.Except, exp.Intersect)):
            return "EXCEPT/INTERSECT: a change on one side can remove rows of the other"
    return None


def _subquery_tables(query: exp.Query) -> set[tuple[str, str]]:
    """Tables read inside expression subqueries (IN, EXISTS, scalar): a change to them
    can flip rows anywhere, so it forces a full rebuild."""
    found: set[tuple[str, str]] = set()
    for subquery in query.find_all(exp.Subquery, exp.Exists, exp.In):
        inner = subquery.this if isinstance(subquery, (exp.Subquery, exp.Exists)) else subquery.args.get("query")
        if inner is None:
            continue
        if isinstance(subquery, exp.Subquery) and isinstance(subquery.parent, (exp.From, exp.Join)):
            continue  # a derived table, handled by the substitution
        for table in inner.find_all(exp.Table):
            found.add((table.db.lower(), table.name.lower()))
    return found


def _driving_side_key(top: exp.Query, key: list[str]) -> list[str]:
    """For a SELECT that joins without aggregating (no GROUP BY, aggregate, window or
    DISTINCT at its top), the key columns read straight from its FROM side, where there are
    some; else ``key``.

    Any non-empty subset of the anchors partitions the output: every output row of such a
    SELECT comes from one row of its FROM side, so the rows whose FROM-side columns take
    given values are exactly the output rows with those values. A key of every output
    column (what the anchors of a join give) cannot be matched below the join, since part of
    it comes from the other side: the recomputation joined every row before filtering (3M
    orders with their customers, to recompute twenty). The FROM side's columns are matched
    on that side's rows before the join, and the stored rows by fewer columns; a change on
    the other side still finds its keys by joining the changed rows with the FROM side.
    A declared ``unique_key`` among the anchors is used instead (``analyse_keys``)."""
    if not isinstance(top, exp.Select) or not top.args.get("joins") or not _row_level(top):
        return key
    from_ = top.args.get("from_") or top.args.get("from")
    if from_ is None:
        return key
    alias = from_.this.alias_or_name.lower()
    driving = []
    for projection in top.selects:
        name, expression = projection.alias_or_name.lower(), projection.unalias()
        if name in key and isinstance(expression, exp.Column) and expression.table.lower() == alias:
            driving.append(name)
    # the FROM side must give most of the key: a side that adds one column to several of
    # the joined side's is not the side the rows are about (``c.plan`` in a customers LEFT
    # JOIN orders), and a key of its few values would replace far more rows than it must
    return driving if 2 * len(driving) > len(key) else key


def _row_level(top: exp.Query) -> bool:
    """A SELECT whose every output row comes from one row of its FROM side (joins aside): no
    GROUP BY, aggregate, window, DISTINCT, HAVING or QUALIFY at its top."""
    if not isinstance(top, exp.Select):
        return False
    if top.args.get("group") or top.args.get("distinct") or top.args.get("qualify") or top.args.get("having"):
        return False
    return not any(isinstance(node, (exp.AggFunc, exp.Window)) for node in own_nodes(top))


def _passed_identity(
    top: exp.Query, key: list[str], identities: Mapping[tuple[str, str], tuple[str, ...]]
) -> tuple[tuple[str, str], list[str]] | None:
    """For a row-level SELECT, its FROM table and the key columns that pass the table's
    identity through, where all of its columns are passed (else None)."""
    if not identities or not _row_level(top):
        return None
    from_ = top.args.get("from_") or top.args.get("from")
    table = from_.this if from_ is not None else None
    if not isinstance(table, exp.Table):
        return None
    name = (table.db.lower(), table.name.lower())
    identity = identities.get(name)
    if not identity:
        return None
    alias = table.alias_or_name.lower()
    passed: dict[str, str] = {}  # identity column -> the output column passing it through
    for projection in top.selects:
        column, expression = projection.alias_or_name.lower(), projection.unalias()
        if column in key and isinstance(expression, exp.Column) and expression.table.lower() == alias:
            passed.setdefault(expression.name.lower(), column)
    if not all(column in passed for column in identity):
        return None
    narrowed = {passed[column] for column in identity}
    return name, [column for column in key if column in narrowed]


def _identity_key(top: exp.Query, key: list[str], identities: Mapping[tuple[str, str], tuple[str, ...]]) -> list[str]:
    """For a row-level SELECT, the key columns that pass its FROM table's identity through
    (a source's ``unique_key``, an upstream model's key: ``identities`` by schema and name),
    where all of them do; else ``key``.

    Any non-empty subset of the anchors partitions a row-level SELECT's rows (see
    ``_driving_side_key``), so the subset is exact; the identity is the selective one. A key
    of every column made each step match and delete on all of them (five columns of 3M
    stored rows, strings included, against one BIGINT: 3-4x the scan and hash)."""
    passed = _passed_identity(top, key, identities)
    return passed[1] if passed is not None else key


def _identity_table(
    top: exp.Query,
    key: list[str],
    identities: Mapping[tuple[str, str], tuple[str, ...]],
    complete: AbstractSet[tuple[str, str]],
) -> tuple[str, str] | None:
    """The FROM table of a row-level SELECT whose identity is exactly ``key``, where that
    table's change log holds every row of each key it touches (``complete``)."""
    if not isinstance(top, exp.Select) or top.args.get("laterals"):
        return None
    passed = _passed_identity(top, key, identities)
    if passed is None or passed[0] not in complete or passed[1] != key:
        return None
    return passed[0]


def _key_is_unique(top: exp.Query, key: list[str], declared: tuple[str, ...]) -> bool:
    """Whether each key value has at most one output row: all group keys are in the key,
    or a DISTINCT over exactly the key, or a declared unique_key (verified every build)."""
    if declared and key == list(declared):
        return True
    if not key or not isinstance(top, exp.Select):
        return False
    by_name = {s.alias_or_name.lower(): s.unalias() for s in top.selects}
    key_exprs = [by_name[name] for name in key]
    group = top.args.get("group")
    if group is not None:
        grouped_by = list(group.expressions)
        if group.args.get("all"):
            grouped_by = [e for e in by_name.values() if not any(isinstance(n, exp.AggFunc) for n in own_nodes(e))]
        return all(expression in key_exprs for expression in grouped_by)
    has_window = any(isinstance(n, exp.Window) for n in own_nodes(top))
    return bool(top.args.get("distinct")) and not has_window and set(key) == set(by_name)


def _is_row_preserving(query: exp.Query) -> bool:
    for node in query.walk():
        if isinstance(node, (exp.AggFunc, exp.Window, exp.Group, exp.Having, exp.Qualify, exp.Distinct)):
            return False
        if isinstance(node, exp.Union) and node.args.get("distinct"):
            return False
        if isinstance(node, (exp.Exists, exp.In)) or (
            isinstance(node, exp.Subquery) and not isinstance(node.parent, (exp.From, exp.Join))
        ):
            return False
    return True


def _nullable_tables(query: exp.Query) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for join in query.find_all(exp.Join):
        if join.side in ("LEFT", "RIGHT", "FULL"):
            for table in join.this.find_all(exp.Table):
                found.add((table.db.lower(), table.name.lower()))
    return found


def _occurrences(query: exp.Query) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for table in query.find_all(exp.Table):
        name = (table.db.lower(), table.name.lower())
        counts[name] = counts.get(name, 0) + 1
    return counts


DISTRIBUTIVE: dict[type[exp.Expr], str] = {exp.Count: "count", exp.Sum: "sum", exp.Min: "min", exp.Max: "max"}


def _distributive(top: exp.Query, key: list[str], unique: bool) -> dict[str, str] | None:
    """Per non-key output column its aggregate kind, when every one is a plain COUNT, SUM,
    MIN or MAX (FILTER allowed, DISTINCT not) over a row-preserving FROM, so that
    aggregating only the appended rows and combining with the stored value is exact."""
    if not unique or not isinstance(top, exp.Select) or top.args.get("group") is None:
        return None
    if top.args.get("having") or top.args.get("qualify") or top.args.get("distinct"):
        return None
    for node in top.walk():
        if node is top:
            continue
        if isinstance(node, exp.Select) and not _is_row_preserving(node):
            return None
        if isinstance(node, (exp.Window, exp.SetOperation, exp.Exists, exp.In)):
            return None
    kinds: dict[str, str] = {}
    for projection in top.selects:
        name = projection.alias_or_name.lower()
        if name in key:
            continue
        aggregate = projection.unalias()
        if isinstance(aggregate, exp.Filter):
            aggregate = aggregate.this
        kind = DISTRIBUTIVE.get(type(aggregate))
        nested = [n for child in aggregate.iter_expressions() for n in child.walk() if isinstance(n, exp.AggFunc)]
        if kind is None or aggregate.find(exp.Distinct) or nested:
            return None
        kinds[name] = kind
    return kinds


def _not_signed(top: exp.Query, key: list[str], unique: bool, schema: Schema | None, dialect: DialectType) -> str:
    try:
        check_signed(top, key, unique, schema, dialect)
    except NotSigned as error:
        return str(error)
    return ""


def _signed_form(
    top: exp.Query, key: list[str], unique: bool, schema: Schema | None, dialect: DialectType
) -> tuple[exp.Query, str]:
    """The query the signed form maintains and why it has none (""): with subquery
    expressions, their decorrelated form (``decorrelate.py``) when it has one; else the
    query as written, which the other strategies read."""
    if not _subquery_tables(top):
        return top, _not_signed(top, key, unique, schema, dialect)
    try:
        joined = decorrelate(top)
    except NotDecorrelated as error:
        return top, f"not decorrelated: {error}"
    reason = _not_signed(joined, key, unique, schema, dialect)
    return (joined, "") if not reason else (top, f"decorrelated, {reason}")


def _partitioned(
    top: exp.Query, key: list[str], unique: bool, schema: Schema | None, dialect: DialectType
) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    """The partitions whose before-and-after form maintains ``top``'s groups: its own
    aggregates must fold (``signed_shape.py``), whatever its FROM and WHERE read. Not with
    a DISTINCT aggregate: its (group, value) counts are changed by the telescoping branches
    of the plain form (``signed_distinct.py``), which a partitioned model does not have."""
    try:
        check_signed(top, key, unique, schema, dialect, partitioned=True)
    except NotSigned:
        return []
    if isinstance(top, exp.Select) and any(a.distinct for a in aggregates_of(top)):
        return []
    return partition_tables(top)


def _group_columns(top: exp.Query) -> list[str]:
    """The output columns of a GROUP BY that groups by nothing else."""
    if not isinstance(top, exp.Select) or top.args.get("group") is None:
        return []
    groups = list(top.args["group"].expressions)
    names = [s.alias_or_name.lower() for s in top.selects if s.unalias() in groups]
    return names if len(names) == len(groups) else []


def analyse_keys(
    qualified: exp.Query,
    declared_key: tuple[str, ...] = (),
    schema: Schema | None = None,
    dialect: DialectType = "duckdb",
    identities: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
    complete_identities: AbstractSet[tuple[str, str]] = frozenset(),
) -> KeyAnalysis:
    """``identities``: per input (schema, name), lower case, the columns that identify its
    rows (``_identity_key``); ``complete_identities``: the inputs whose change log holds every
    row of each identity it touches, old and new: a source's with a ``unique_key`` (its
    capture logs all of a changed key's rows, a repeated key's too), an upstream model's with
    a unique key (one row a key) or ``whole_key_log``. Not an upstream model joined to
    others and keyed by an identity that may repeat: the diffed keyed form it takes when a
    joined table changes logs only the rows of a key that differ."""
    try:
        inlined = inline_ctes(qualified)
    except RecursiveCTE:
        return KeyAnalysis(key=None, reason="recursive CTE")
    reason = _whole_query_reason(inlined)
    if reason:
        return KeyAnalysis(key=None, reason=reason)
    try:
        flags = anchors(inlined)
    except NoKey as error:
        return KeyAnalysis(key=None, reason=str(error))
    names = [s.alias_or_name.lower() for s in inlined.selects]
    key = [name for name, ok in zip(names, flags, strict=True) if ok]
    top = inlined
    global_aggregate = (
        isinstance(top, exp.Select)
        and not top.args.get("group")
        and any(isinstance(n, exp.AggFunc) for s in top.selects for n in own_nodes(s))
        and not any(isinstance(n, exp.Window) for n in own_nodes(top))
    )
    if declared_key and set(declared_key) <= set(key):
        key = list(declared_key)
    else:
        key = _identity_key(inlined, _driving_side_key(inlined, key), identities or {})
    unanchored = ""
    if not key and not global_aggregate:
        unanchored = (
            "no column identifies the rows a change affects (no group key, window partition or row-level column)"
        )
        key = _group_columns(top)
        partitions = _partitioned(top, key, True, schema, dialect) if key else []
        if not partitions:
            return KeyAnalysis(key=None, reason=unanchored)
    unique = _key_is_unique(inlined, key, declared_key)
    written = inlined
    inlined, not_signed = _signed_form(inlined, key, unique, schema, dialect)
    decorrelated = inlined is not written
    partitions = _partitioned(written, key, unique, schema, dialect) if not_signed or decorrelated else []
    if partitions and not_signed:
        inlined = written
    elif unanchored:
        return KeyAnalysis(key=None, reason=unanchored)
    subquery_tables = _subquery_tables(inlined)
    kept = kept_aggregates(inlined, schema, dialect) if subquery_tables and not_signed and not partitions else []
    identity_table = _identity_table(inlined, key, identities or {}, complete_identities)
    # each output row from one combination of input rows (no aggregate or window of its own,
    # in its SELECT, HAVING or QUALIFY): the rows of a partition are the partition's alone
    row_level = (
        isinstance(inlined, exp.Select)
        and inlined.args.get("group") is None
        and not inlined.args.get("distinct")
        and not any(isinstance(n, (exp.AggFunc, exp.Window)) for n in own_nodes(inlined))
    )
    try:
        tails, not_tailed = window_tails(written, schema, str(dialect or "duckdb")), ""
    except NotTailed as error:
        tails, not_tailed = None, str(error)
    return KeyAnalysis(
        key=key,
        reason="",
        global_aggregate=global_aggregate,
        subquery_tables=subquery_tables,
        inlined=inlined,
        unique=unique,
        row_preserving=_is_row_preserving(inlined),
        nullable_tables=_nullable_tables(inlined),
        occurrences=_occurrences(inlined),
        distributive=None if unanchored else _distributive(inlined, key, unique),
        not_signed=not_signed,
        partitions=partitions,
        written=written if partitions else None,
        unanchored=unanchored,
        row_partitions=partition_tables(inlined) if row_level and key and subquery_tables else [],
        identity_table=identity_table,
        identity=tuple((identities or {}).get(identity_table, ())) if identity_table else (),
        whole_key_log=unique or (identity_table is not None and not inlined.args.get("joins")),
        kept=kept,
        kept_tables=tables_read_only_inside(inlined, kept) if kept else frozenset(),
        tails=tails,
        not_tailed=not_tailed,
    )
