"""Which tables a model's SQL reads: every table in every scope, CTE names excluded."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from sqlorch.refs import TableRef


def table_references(query: exp.Query) -> list[exp.Table]:
    """Base-table references (joins, subqueries, set operations, correlated subqueries).

    Scopes resolve CTE names, so a CTE that shadows a table is never an edge. Table
    functions such as ``read_csv(...)`` are not relations and are left out.
    """
    if not any(isinstance(node, exp.With) for node in query.walk()):
        # Only a CTE name can shadow a table: without any, a plain walk finds the same
        # tables as sqlglot's scopes, several times faster.
        return [table for table in query.find_all(exp.Table) if isinstance(table.this, exp.Identifier)]
    found: list[exp.Table] = []
    for scope in traverse_scope(query):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                found.append(source)
    return found


def table_ref(table: exp.Table) -> TableRef:
    """A table reference as written, lower-cased; schema "" when the name is bare."""
    return TableRef(
        schema=table.db.lower() if table.db else "",
        name=table.name.lower(),
        catalog=table.catalog.lower() if table.catalog else None,
    )


def position(node: exp.Expr) -> tuple[int | None, int | None]:
    """Line and column sqlglot recorded for a node (its identifier's token)."""
    for candidate in (node, node.args.get("db"), node.args.get("this")):
        meta = getattr(candidate, "meta", None) or {}
        if "line" in meta:
            col = meta.get("col")
            name = candidate.name if isinstance(candidate, exp.Expr) else ""
            # sqlglot records the column where the token ends; report where it starts.
            return meta["line"], (col - len(name) + 1) if col and name else col
    return None, None
