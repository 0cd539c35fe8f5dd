"""Column lineage of one qualified query: per output column, the input columns it comes from.

One walk over the qualified tree (every column qualified, ``*`` expanded): CTEs and derived
tables are walked once each and their outputs looked up by name, so a model costs one pass
over its nodes, not one pass per column as sqlglot's ``lineage`` does.

Each edge from an input column to an output column has a kind, strongest first:

- ``passthrough``: the value is copied unchanged (renamed, through CTEs, subqueries and
  UNION branches, or a ``JOIN ... USING`` column);
- ``transformed``: the value is computed from it (expressions, casts, functions,
  aggregates, windows including their PARTITION BY and ORDER BY);
- ``filter``: it only decides which rows there are or how they group (WHERE, JOIN ON,
  GROUP BY, HAVING, QUALIFY, DISTINCT ON, ORDER BY under LIMIT, subquery predicates).
  Every output column of a SELECT carries that SELECT's filter edges.

Along a path the weaker kind wins (a column filtered below and passed through above only
filters); over several paths the stronger wins. A column's own kind is ``passthrough``,
``transformed``, or ``literal`` when no input column gives it its value (``'x'``,
``current_date``; ``count(*)`` is ``transformed``: it is computed from the rows).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from sqlorch.refs import TableRef

PASSTHROUGH, TRANSFORMED, FILTER = 0, 1, 2
EDGE_KINDS = ("passthrough", "transformed", "filter")
RANK = {name: rank for rank, name in enumerate(EDGE_KINDS)}

ColumnId = tuple[str, str]  # (relation, column)
Deps = dict[ColumnId, int]  # input column -> edge rank
# one model's lineage as the manifest stores it: column -> {"kind": ..., "from": [[relation, column, edge kind]]}
LineageJson = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ColumnLineage:
    kind: str  # "passthrough" | "transformed" | "literal"
    inputs: dict[ColumnId, str]  # input column -> edge kind, sorted

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "from": [[rel, col, kind] for (rel, col), kind in self.inputs.items()]}


@dataclass(frozen=True)
class _Col:
    kind: str
    deps: Deps


_EMPTY = _Col("literal", {})


@dataclass
class _Rel:
    """A walked query: its named output columns, and the filter edges deciding its rows."""

    columns: dict[str, _Col]
    rows: Deps = field(default_factory=dict)


@dataclass
class _Scope:
    sources: dict[str, str | _Rel] = field(default_factory=dict)  # alias -> base relation | walked query
    ctes: dict[str, _Rel] = field(default_factory=dict)
    windows: dict[str, exp.Expr] = field(default_factory=dict)  # WINDOW w AS (...) of this SELECT
    parent: _Scope | None = None

    def source(self, alias: str) -> str | _Rel | None:
        scope: _Scope | None = self
        while scope is not None:
            if alias in scope.sources:
                return scope.sources[alias]
            scope = scope.parent
        return None

    def cte(self, name: str) -> _Rel | None:
        scope: _Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return scope.ctes[name]
            scope = scope.parent
        return None


def _merge(into: Deps, deps: Deps, floor: int = PASSTHROUGH) -> None:
    """Add ``deps`` to ``into``: each edge at least ``floor`` weak, the strongest kept."""
    for column, rank in deps.items():
        rank = max(rank, floor)
        if rank < into.get(column, FILTER + 1):
            into[column] = rank


def _stops_walk(node: exp.Expr, root: exp.Expr) -> bool:
    """A column is resolved whole; a nested query (a Subquery is one) is walked on its own."""
    return isinstance(node, exp.Column) or (node is not root and isinstance(node, exp.Query))


def _name(node: exp.Expr) -> str:
    return node.alias_or_name.lower()


class _Walker:
    def __init__(self, inputs: Collection[TableRef]) -> None:
        self.by_name: dict[tuple[str, str], str] = {}
        bare: dict[str, list[str]] = {}
        for ref in inputs:
            self.by_name[(ref.schema, ref.name)] = str(ref)
            bare.setdefault(ref.name, []).append(str(ref))
        self.bare = {name: refs[0] for name, refs in bare.items() if len(refs) == 1}

    def relation(self, table: exp.Table) -> str:
        """The input a table reference names (bare names were resolved when loading)."""
        schema, name = table.db.lower(), table.name.lower()
        if schema:
            return self.by_name.get((schema, name), f"{schema}.{name}")
        return self.bare.get(name, name)

    def query(self, node: exp.Expr, scope: _Scope) -> _Rel:
        with_ = node.args.get("with_")
        if with_ is not None:
            scope = _Scope(parent=scope)
            for cte in with_.expressions:
                # a recursive CTE's reference to itself adds nothing its anchor does not
                scope.ctes[_name(cte)] = _Rel({})
                scope.ctes[_name(cte)] = self.query(cte.this, scope)
        if isinstance(node, exp.Subquery):
            return self.query(node.this, scope)
        if isinstance(node, exp.Select):
            return self.select(node, scope)
        if isinstance(node, exp.SetOperation):
            return self.set_operation(node, scope)
        return _Rel({})

    def set_operation(self, node: exp.SetOperation, scope: _Scope) -> _Rel:
        left, right = self.query(node.this, scope), self.query(node.expression, scope)
        rows: Deps = {}
        _merge(rows, left.rows)
        _merge(rows, right.rows)
        if not isinstance(node, exp.Union):  # EXCEPT / INTERSECT: the right side only removes rows
            for col in right.columns.values():
                _merge(rows, col.deps, FILTER)
            return _Rel({name: _with_rows(col, rows) for name, col in left.columns.items()}, rows)
        columns: dict[str, _Col] = {}
        for (name, a), b in zip(left.columns.items(), right.columns.values(), strict=False):
            deps = dict(a.deps)
            _merge(deps, b.deps)
            columns[name] = _Col(a.kind if a.kind == b.kind else "transformed", deps)
        return _Rel(columns, rows)

    def select(self, select: exp.Select, outer: _Scope) -> _Rel:
        scope = _Scope(parent=outer)
        scope.windows = {w.name.lower(): w for w in select.args.get("windows") or []}
        rows: Deps = {}
        from_ = select.args.get("from_")
        joins = select.args.get("joins") or []
        items = ([from_.this] if from_ else []) + [join.this for join in joins]
        items += select.args.get("laterals") or []
        for item in items:
            source = self.source(item, scope)
            scope.sources[_name(item)] = source
            if isinstance(source, _Rel):
                _merge(rows, source.rows)
        columns = {_name(p): self.value(p.unalias(), scope) for p in select.selects if not isinstance(p, exp.Star)}
        deciding: list[exp.Expr | None] = [join.args.get("on") for join in joins]
        deciding += [select.args.get(arg) for arg in ("where", "group", "having", "qualify")]
        distinct = select.args.get("distinct")
        if distinct is not None:
            deciding.append(distinct.args.get("on"))
        if select.args.get("limit") or select.args.get("offset"):
            deciding.append(select.args.get("order"))
        for clause in deciding:
            if clause is not None:
                _merge(rows, self.value(clause, scope, columns).deps, FILTER)
        return _Rel({name: _with_rows(col, rows) for name, col in columns.items()}, rows)

    def source(self, item: exp.Expr, scope: _Scope) -> str | _Rel:
        if isinstance(item, exp.Table) and isinstance(item.this, exp.Identifier):
            cte = None if item.db else scope.cte(item.name.lower())
            return cte if cte is not None else self.relation(item)
        if isinstance(item, exp.Subquery) or isinstance(item.this, exp.Query):  # (a LATERAL) subquery
            return self.query(item if isinstance(item, exp.Subquery) else item.this, scope)
        # UNNEST, table functions, VALUES: every alias column computed from the columns inside
        computed = self.value(item, scope)
        alias = item.args.get("alias")
        names = [_name(c) for c in alias.columns] if isinstance(alias, exp.TableAlias) else []
        kind = "transformed" if computed.deps else "literal"
        return _Rel({name: _Col(kind, computed.deps) for name in names})

    def column(self, column: exp.Column, scope: _Scope, aliases: dict[str, _Col] | None) -> _Col:
        name = column.name.lower()
        table = column.table.lower()
        if not table:  # qualify leaves only references to output aliases unqualified
            return (aliases or {}).get(name, _EMPTY)
        source = scope.source(table)
        if isinstance(source, str):
            return _Col("passthrough", {(source, name): PASSTHROUGH})
        if source is None:
            return _EMPTY
        return source.columns.get(name, _EMPTY)

    def value(self, expression: exp.Expr, scope: _Scope, aliases: dict[str, _Col] | None = None) -> _Col:
        if isinstance(expression, exp.Column):
            return self.column(expression, scope, aliases)
        if _is_using_coalesce(expression):
            deps: Deps = {}
            for column in expression.iter_expressions():
                assert isinstance(column, exp.Column)
                _merge(deps, self.column(column, scope, aliases).deps)
            return _Col("passthrough", deps)
        deps = {}
        computed = False
        for node in expression.walk(prune=lambda n: _stops_walk(n, expression)):
            if isinstance(node, exp.Column):
                _merge(deps, self.column(node, scope, aliases).deps, TRANSFORMED)
            elif isinstance(node, (exp.AggFunc, exp.Window)):
                computed = True
                named = scope.windows.get(node.alias.lower()) if isinstance(node, exp.Window) and node.alias else None
                if named is not None:  # OVER w: the columns of WINDOW w AS (...)
                    _merge(deps, self.value(named, scope).deps, TRANSFORMED)
            elif node is not expression and isinstance(node, exp.Query):
                nested = self.query(node, _Scope(parent=scope))
                for col in nested.columns.values():
                    _merge(deps, col.deps, TRANSFORMED)
                _merge(deps, nested.rows, FILTER)
                computed = True
        valued = computed or any(rank < FILTER for rank in deps.values())
        return _Col("transformed" if valued else "literal", deps)


def _is_using_coalesce(expression: exp.Expr) -> bool:
    """``COALESCE(a.id, b.id)`` with one name throughout: what qualify makes of ``USING (id)``."""
    if not isinstance(expression, exp.Coalesce):
        return False
    parts = list(expression.iter_expressions())
    return all(isinstance(p, exp.Column) for p in parts) and len({p.name.lower() for p in parts}) == 1


def _with_rows(col: _Col, rows: Deps) -> _Col:
    if not rows:
        return col
    deps = dict(col.deps)
    _merge(deps, rows, FILTER)
    return _Col(col.kind, deps)


def column_lineage(qualified: exp.Query, inputs: Collection[TableRef]) -> dict[str, ColumnLineage]:
    """Per output column of ``qualified`` (in order), its kind and its input columns;
    relations are named as in ``inputs`` (the model's resolved inputs)."""
    walked = _Walker(inputs).query(qualified, _Scope())
    return {
        name: ColumnLineage(col.kind, {dep: EDGE_KINDS[rank] for dep, rank in sorted(col.deps.items())})
        for name, col in walked.columns.items()
    }
