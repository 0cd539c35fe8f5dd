"""Which tables a model's SQL reads: every table in every scope, CTE names excluded."""

from __future__ import annotations

from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope


def table_references(query: exp.Query) -> list[exp.Table]:
    """Base-table references (joins, subqueries, set operations, correlated subqueries).

    Scopes resolve CTE names, so a CTE that shadows a table is never an edge. Table
    functions such as ``read_csv(...)`` are not relations and are left out.
    """
    found: list[exp.Table] = []
    for scope in traverse_scope(query):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier):
                found.append(source)
    return found
