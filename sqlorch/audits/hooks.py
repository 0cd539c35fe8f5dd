"""Where the model runners call the audits: write, audit, publish.

Where DDL is transactional (DuckDB, Postgres), a full build audits the new table inside
the transaction that creates it and rolls back on failure. Elsewhere (Snowflake commits
before any DDL, BigQuery has no transactions) the new rows go to a scratch table first,
are audited there, and only then published from it (``planning/rewrites/`` plans both).
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.adapters.base import Capabilities
from sqlorch.execution.statements import select_from
from sqlorch.refs import TableRef


def audits_in_transaction(capabilities: Capabilities) -> bool:
    return capabilities.transactions and capabilities.transactional_ddl and capabilities.read_own_writes


def stored_rest(physical: TableRef, columns: list[str], match: exp.Expr | None) -> exp.Select:
    """The stored rows an incremental step keeps: those outside its affected keys
    (``match`` None: every row, the step only appends)."""
    rows = select_from(physical, columns, physical.name)
    return rows if match is None else rows.where(exp.not_(match.copy()))
