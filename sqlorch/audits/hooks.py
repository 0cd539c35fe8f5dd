"""Where the model runners call the audits: write, audit, publish.

Where DDL is transactional (DuckDB, Postgres), a full build audits the new table inside
the transaction that creates it and rolls back on failure. Elsewhere (Snowflake commits
before any DDL, BigQuery has no transactions) the new rows go to a scratch table first,
are audited there, and only then published from it.
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.audits.run import ModelAudits
from sqlorch.errors import SqlorchError
from sqlorch.execution.statements import create_table_as, drop_table, execute_create, select_from
from sqlorch.refs import TableRef
from sqlorch.state.store import work_table


def audits_in_transaction(adapter: Adapter) -> bool:
    capabilities = adapter.capabilities
    return capabilities.transactions and capabilities.transactional_ddl and capabilities.read_own_writes


def audit_in_scratch(adapter: Adapter, audits: ModelAudits, ref: TableRef, sql: exp.Query) -> TableRef:
    """The model's rows written to a scratch table and audited there; the caller publishes
    from it and drops it. A failed audit drops it and raises."""
    scratch = work_table(ref, "audit")
    execute_create(adapter, create_table_as(scratch, sql))
    try:
        audits.check(
            adapter, scratch, list(adapter.columns(scratch) or {}), None, "the scratch table was not published"
        )
    except SqlorchError:
        adapter.execute(drop_table(scratch))
        raise
    return scratch


def published_from(scratch: TableRef, adapter: Adapter) -> exp.Select:
    return select_from(scratch, list(adapter.columns(scratch) or {}))


def stored_rest(physical: TableRef, columns: list[str], match: exp.Expr | None) -> exp.Select:
    """The stored rows an incremental step keeps: those outside its affected keys
    (``match`` None: every row, the step only appends)."""
    rows = select_from(physical, columns, physical.name)
    return rows if match is None else rows.where(exp.not_(match.copy()))
