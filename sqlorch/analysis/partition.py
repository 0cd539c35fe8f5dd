"""Partitions of a model's rows by one key that every changed input is read through.

When each changed table is reached through an equality chain on one key K (the join key of
the scope's rows, the correlation key of every subquery that reads it, the ON key of a LEFT
JOIN's nullable side, a derived table's group key), the rows of the *scope* (the model's own
SELECT, or a derived table that is its FROM) with ``K = k`` depend only on the changed
tables' rows whose partition column equals ``k``. The model then changes by the scope's rows
of the touched partitions as they are now (+1) less the same rows evaluated over the inputs
as they were (-1, ``planning/rewrites/signed_partition.py``): whatever sits inside (AVG of
DECIMAL, EXISTS, NOT EXISTS, ``<>`` correlations, NULL-extension, COUNT of a LEFT JOIN) is
evaluated by the warehouse itself over the exact old rows, so the result is bit-exact.

Why each anchor is exact, for a scope row with ``K = k``:

- a table joined inner with a column in K's equality class: its rows in the scope row have
  that column ``= k``;
- a table on a LEFT JOIN's nullable side whose ON equates its column with K's class: only
  its rows with that column ``= k`` can match, so they alone decide the NULL extension;
- a table read in a subquery (EXISTS, NOT EXISTS, IN, scalar, at any depth) whose WHERE
  conjuncts equate its column with K's class (``IN``'s probe counts as one equality when the
  ``IN`` is a WHERE conjunct): the subquery sees only its rows with that column ``= k``,
  whatever else it computes from them (``<>``, aggregates, NOT);
- a scope that is the model's derived table: its rows are filtered on K before grouping, so
  K must be a group key there; the model over it is then linear in its rows (inner joins).

A NULL K is a partition of its own: the scope's rows with a NULL K depend only on the NULL
rows of the tables K is a column of (a correlation or ON with a NULL never matches). Tables
read elsewhere (an uncorrelated subquery, another derived table) are not anchored: a change
to them keeps the model's other strategies.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from sqlorch.analysis.conditions import conjuncts

Name = tuple[str, str]  # (table alias, column), lower case
SUBQUERIES = (exp.Exists, exp.In, exp.Subquery)


@dataclass(frozen=True)
class Anchor:
    """A table occurrence and its column equal to the partition key in every row it feeds."""

    table: exp.Table
    column: str


@dataclass(frozen=True)
class Partition:
    scope: exp.Select  # the SELECT whose rows are partitioned (the model's, or its derived table)
    key: exp.Column  # K: a column of the scope's FROM
    anchors: list[Anchor]  # every anchored table occurrence, changed or not

    def covers(self, tables: list[exp.Table]) -> bool:
        anchored = {id(a.table) for a in self.anchors}
        return all(id(t) in anchored for t in tables)


def _items(select: exp.Select) -> list[tuple[exp.Expr, exp.Join | None]]:
    from_ = select.args.get("from_") or select.args.get("from")
    found: list[tuple[exp.Expr, exp.Join | None]] = [(from_.this, None)] if from_ else []
    return found + [(join.this, join) for join in select.args.get("joins") or []]


def _inner(join: exp.Join | None) -> bool:
    return join is None or (not join.side and join.kind in ("", "INNER", "CROSS", None))


def _name(column: exp.Column) -> Name:
    return (column.table.lower(), column.name.lower())


def _column_pair(node: exp.Expr) -> tuple[exp.Column, exp.Column] | None:
    if not isinstance(node, exp.EQ):
        return None
    left, right = node.this, node.expression
    if isinstance(left, exp.Column) and isinstance(right, exp.Column) and left.table and right.table:
        return left, right
    return None


def _in_probe(node: exp.In) -> tuple[exp.Column, exp.Column] | None:
    """``c IN (SELECT t.x FROM ...)`` as the equality ``c = t.x`` over the subquery's rows:
    only where its rows are a filter of its FROM (no LIMIT, and grouped by ``t.x`` if at all)."""
    query = node.args.get("query")
    inner = query.this if isinstance(query, exp.Subquery) else query
    if not isinstance(node.this, exp.Column) or not isinstance(inner, exp.Select) or len(inner.selects) != 1:
        return None
    column = inner.selects[0].unalias()
    if not isinstance(column, exp.Column) or not column.table:
        return None
    if any(inner.args.get(name) for name in ("limit", "offset", "qualify")):
        return None
    group = inner.args.get("group")
    if group is not None and column not in group.expressions:
        return None
    if group is None and any(isinstance(n, exp.AggFunc) for n in column.walk()):
        return None
    return node.this, column


class _Classes:
    """Union-find over qualified columns."""

    def __init__(self) -> None:
        self.parent: dict[Name, Name] = {}
        self.columns: dict[Name, exp.Column] = {}

    def add(self, column: exp.Column) -> Name:
        name = _name(column)
        self.columns.setdefault(name, column)
        self.parent.setdefault(name, name)
        return name

    def root(self, name: Name) -> Name:
        while self.parent[name] != name:
            name = self.parent[name]
        return name

    def union(self, left: exp.Column, right: exp.Column) -> None:
        self.parent[self.root(self.add(left))] = self.root(self.add(right))

    def connected(self, anchored: set[Name]) -> set[Name]:
        roots = {self.root(n) for n in anchored if n in self.parent}
        return {n for n in self.parent if self.root(n) in roots} | anchored


def _own_subqueries(select: exp.Select) -> list[exp.Expr]:
    """The subquery expressions of ``select``'s own scope (not derived tables, not deeper)."""
    found: list[exp.Expr] = []
    for node in select.walk(prune=lambda n: n is not select and isinstance(n, (exp.Query, *SUBQUERIES))):
        if node is select or not isinstance(node, SUBQUERIES):
            continue
        if isinstance(node, exp.Subquery) and isinstance(node.parent, (exp.From, exp.Join)):
            continue
        if isinstance(node, exp.In) and node.args.get("query") is None:
            continue
        found.append(node)
    return found


def _subquery_select(node: exp.Expr) -> exp.Select | None:
    inner = node.args.get("query") if isinstance(node, exp.In) else node.this
    inner = inner.this if isinstance(inner, exp.Subquery) else inner
    return inner if isinstance(inner, exp.Select) else None


def _classes(select: exp.Select, extra: list[tuple[exp.Column, exp.Column]]) -> _Classes:
    classes = _Classes()
    where = select.args.get("where")
    roots = conjuncts(where.this if where else None)
    for _, join in _items(select):
        if join is not None and _inner(join):
            roots += conjuncts(join.args.get("on"))
    for pair in [*(p for p in map(_column_pair, roots) if p is not None), *extra]:
        classes.union(*pair)
    return classes


def _anchors(
    select: exp.Select, anchored: set[Name], extra: list[tuple[exp.Column, exp.Column]], scope: bool
) -> list[Anchor]:
    """The table occurrences of ``select`` (and of its subqueries, at any depth) whose rows
    feeding a row of the scope have a column equal to the columns ``anchored`` (K's, for the
    scope itself; for a subquery, its outer query's that its own aliases do not shadow)."""
    own = {item.alias_or_name.lower() for item, _ in _items(select)}
    known = anchored if scope else {n for n in anchored if n[0] not in own}
    equal = _classes(select, extra).connected(known)
    found: list[Anchor] = []
    for item, join in _items(select):
        if not isinstance(item, exp.Table) or not isinstance(item.this, exp.Identifier):
            continue
        alias = item.alias_or_name.lower()
        mine = sorted(name for table, name in equal if table == alias)
        if not mine and join is not None and join.side == "LEFT":
            for pair in filter(None, map(_column_pair, conjuncts(join.args.get("on")))):
                ends = [_name(c) for c in pair]
                if ends[0][0] == alias and ends[1] in equal:
                    mine = [ends[0][1]]
                elif ends[1][0] == alias and ends[0] in equal:
                    mine = [ends[1][1]]
        if mine and (join is None or _inner(join) or join.side == "LEFT"):
            found.append(Anchor(item, mine[0]))
    where = select.args.get("where")
    terms = conjuncts(where.this if where else None)
    for node in _own_subqueries(select):
        inner = _subquery_select(node)
        if inner is None:
            continue
        probe = _in_probe(node) if isinstance(node, exp.In) and any(node is c for c in terms) else None
        found += _anchors(inner, equal, [probe] if probe else [], scope=False)
    return found


def _scopes(top: exp.Select) -> list[exp.Select]:
    """The model's SELECT, and a derived table of it whose rows the model is linear in: joined
    inner, itself a plain filter or grouping of its FROM."""
    scopes = [top]
    for item, join in _items(top):
        if not _inner(join) or not isinstance(item, exp.Subquery) or not isinstance(item.this, exp.Select):
            continue
        inner = item.this
        if any(inner.args.get(name) for name in ("distinct", "limit", "offset", "qualify", "order")):
            continue
        if any(isinstance(n, exp.Window) for n in inner.walk()):
            continue
        scopes.append(inner)
    return scopes


def _keys_of(scope: exp.Select, top: exp.Select) -> list[exp.Column]:
    """The columns that may be K: every qualified column of the scope's FROM items but a LEFT
    JOIN's nullable side (NULL in its NULL-extended rows, which the filter on K would drop
    though a change of that side makes and unmakes them); in a grouped derived table only its
    GROUP BY columns (its filter acts before the grouping)."""
    own = {item.alias_or_name.lower() for item, join in _items(scope) if _inner(join)}
    group = scope.args.get("group")
    aggregated = group is not None or any(
        isinstance(n, exp.AggFunc) for s in scope.selects for n in s.walk() if not isinstance(n, exp.Window)
    )
    if scope is not top and aggregated:
        if group is None:
            return []
        return [g for g in group.expressions if isinstance(g, exp.Column) and g.table.lower() in own]
    found: dict[Name, exp.Column] = {}
    for column in scope.find_all(exp.Column):
        if column.table and column.table.lower() in own and _declared_in(column) is scope:
            found.setdefault(_name(column), column)
    return list(found.values())


def _declared_in(column: exp.Column) -> exp.Select | None:
    """The SELECT whose FROM item ``column`` reads (the nearest one with its alias)."""
    node = column.parent
    while node is not None:
        if isinstance(node, exp.Select) and any(
            item.alias_or_name.lower() == column.table.lower() for item, _ in _items(node)
        ):
            return node
        node = node.parent
    return None


def partitions(top: exp.Query) -> list[Partition]:
    """Every partition of ``top`` (a qualified, CTE-inlined SELECT) that anchors a table; the
    tree is ``top`` itself, so its nodes may be replaced through the anchors."""
    if not isinstance(top, exp.Select):
        return []
    found: list[Partition] = []
    for scope in _scopes(top):
        seen: set[frozenset[int]] = set()
        for key in _keys_of(scope, top):
            anchors = _anchors(scope, {_name(key)}, [], scope=True)
            ids = frozenset(id(a.table) for a in anchors)
            if anchors and ids not in seen:
                seen.add(ids)
                found.append(Partition(scope, key, anchors))
    return found


def find_partition(top: exp.Query, changed: list[exp.Table]) -> Partition | None:
    """The first partition of ``top`` that anchors every table occurrence in ``changed``."""
    return next((p for p in partitions(top) if p.covers(changed)), None)


def own_conjuncts(table: exp.Table) -> list[exp.Expr]:
    """The conjuncts of the WHERE (and inner ON) of the SELECT that reads ``table`` as an inner
    FROM item that read only ``table``'s columns, no subquery: a row of ``table`` failing one
    is in no row of that SELECT, whatever else it computes (aggregates, correlations), so a
    change among such rows changes no partition, and they need no copy in the partitions'
    scratch tables (TPC-H Q20's ``l_shipdate`` range). Nothing for a LEFT JOIN's nullable side:
    dropping a row there NULL-extends its partner, which a WHERE may keep."""
    holder = table.parent
    select = holder.parent if isinstance(holder, (exp.From, exp.Join)) else None
    if not isinstance(select, exp.Select) or (isinstance(holder, exp.Join) and not _inner(holder)):
        return []
    where = select.args.get("where")
    candidates = conjuncts(where.this if where else None)
    if isinstance(holder, exp.Join):
        candidates += conjuncts(holder.args.get("on"))
    alias = table.alias_or_name.lower()
    found = []
    for conjunct in candidates:
        columns = list(conjunct.find_all(exp.Column))
        if not columns or any(c.table.lower() != alias for c in columns):
            continue
        if conjunct.find(exp.Query, exp.Subquery, exp.Exists, exp.AggFunc, exp.Window) is None:  # IN (1, 2) is own
            found.append(conjunct)
    return found


def partition_tables(top: exp.Query) -> list[tuple[str, frozenset[tuple[str, str]]]]:
    """Per partition, its key and the tables every occurrence of which it anchors: the tables
    whose changes the partitioned form follows (``(schema, name)``, as in ``KeyAnalysis``)."""
    occurrences: dict[tuple[str, str], set[int]] = {}
    for table in top.find_all(exp.Table):
        occurrences.setdefault((table.db.lower(), table.name.lower()), set()).add(id(table))
    found = []
    for partition in partitions(top):
        anchored = {id(a.table) for a in partition.anchors}
        tables = frozenset(name for name, ids in occurrences.items() if ids <= anchored)
        if tables:
            found.append((partition.key.sql(), tables))
    return found
