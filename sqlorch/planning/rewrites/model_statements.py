"""What every strategy's statements share: the model's context at plan time, the scratch
tables, the bookkeeping that commits with the data, the unique-key check, the audit point,
and the rows a model's changed inputs expose (``ChangeSources``). Each strategy is a module
of its own in this package, listed cheapest first in ``STRATEGIES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Capabilities
from sqlorch.analysis.keys import KeyAnalysis
from sqlorch.execution.statements import (
    changed_rows,
    columns_of,
    create_table_as,
    drop_table,
    replace_statements,
    select_from,
)
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.cost import FULL, INCREMENTAL, Costs
from sqlorch.planning.steps import (
    KIND,
    MICROSECONDS,
    NEW_ROWS,
    OLD_ROWS,
    ROWS,
    WRITTEN,
    AuditPoint,
    InputChange,
    Item,
    Statement,
    placeholder,
)
from sqlorch.refs import TableRef
from sqlorch.state.history import TableStats, distinct_keys_query
from sqlorch.state.store import (
    BATCH_COLUMN,
    RelationState,
    add_batch_statement,
    change_log,
    save_relation_statements,
    save_watermark_statements,
    update_watermarks_statement,
    work_table,
)


@dataclass
class ModelContext:
    """What a model's statements depend on, all known at plan time."""

    compiled: CompiledModel
    physical: TableRef
    physical_of: dict[TableRef, TableRef]  # project relation -> physical, models and seeds
    input_columns: dict[TableRef, list[str]]
    watermarks: dict[str, int]  # input -> batch consumed after this run
    batch: int  # the batch number this run writes
    default_schema: str
    capabilities: Capabilities
    audited: bool = False  # the model has audits to run (write-audit-publish, see sqlorch.audits.hooks)
    state: RelationState | None = None  # the model's record before this run
    watermarks_stored: bool = False  # every input has a watermark row already (moved by one UPDATE)
    previous: dict[str, str] | None = None  # the table's columns and types before the build (None: absent)
    log_exists: bool = False  # the model's change log exists before the build
    dialect: str = "duckdb"  # the target's (how a rebuilt table's keys are counted)
    costs: Costs | None = None  # the cost model's estimates, recorded with the run (``state/history.py``)
    stats: TableStats | None = None  # the table as the model's last run left it
    aggregate_state: int | None = None  # the model batch its signed-delta state matches (``signed_statements.py``)
    kept_state: int | None = None  # the model batch its kept derived tables' groups match (``kept_aggregates.py``)
    tails_state: int | None = None  # the model batch its window tails match (``window_tails.py``)
    max_batch_rows: int | None = None  # changed rows above which keys are replaced in chunks (``planning/chunks.py``)
    read: bool = True  # some model of the project reads the model's change log


def planned(statement: exp.Expr, purpose: str, transaction: bool = False, binds: str = "") -> Statement:
    return Statement(statement, purpose, transaction=transaction, binds=binds)


def creates(ctx: ModelContext, create: exp.Create, purpose: str, transaction: bool = False) -> list[Statement]:
    """A (possibly ``OR REPLACE``) CREATE in the form the warehouse supports."""
    return [planned(s, purpose, transaction) for s in replace_statements(create, ctx.capabilities)]


def table_created(
    ctx: ModelContext, table: TableRef, query: exp.Query, purpose: str, scratch: bool = True, transaction: bool = False
) -> list[Item]:
    """``table`` made from ``query`` (``creates``): temporary where it is a step's scratch
    table and the warehouse has them, a table of its own for state kept across builds."""
    return [
        *creates(
            ctx, create_table_as(table, query, temporary=scratch and ctx.capabilities.temp_tables), purpose, transaction
        )
    ]


def stored_columns(ctx: ModelContext) -> list[str]:
    """The table's columns, from the model's record: an incremental run only happens when the
    record matches the compiled model (``planner.decide_model``), else from the catalog read
    before the build."""
    if ctx.state is not None and ctx.state.columns:
        return list(ctx.state.columns)
    return list(ctx.previous or {})


def scratch(ctx: ModelContext, part: str) -> TableRef:
    return work_table(ctx.compiled.model.ref, part, temporary=ctx.capabilities.temp_tables)


def drop_scratch(ctx: ModelContext, tables: list[TableRef]) -> list[Statement]:
    """A temporary scratch table is left to the next run's ``CREATE OR REPLACE`` (or the end of
    the connection): one statement less per table. Dropped even after a failure."""
    if ctx.capabilities.temp_tables:
        return []
    return [Statement(drop_table(table), "drop scratch table", always=True) for table in tables]


def clear_leftovers(ctx: ModelContext, log: TableRef) -> list[Statement]:
    """Change-log rows of this batch number written by a run that died before recording
    the batch: only possible where a transaction can commit part way (no transactions, or DDL
    that commits the open one), so elsewhere the statement is not planned."""
    if ctx.capabilities.transactions and ctx.capabilities.transactional_ddl:
        return []
    where = exp.column(BATCH_COLUMN, quoted=True) >= ctx.batch
    return [planned(exp.delete(log.to_table(), where=where), "clear change-log rows of a crashed run", True)]


def run_cost(ctx: ModelContext, strategy: str, appends: bool = False) -> dict[str, Any]:
    """The run's cost and the table's statistics, for the cost model's history: values the
    executor binds (the seconds, the rows written) or the warehouse computes in the same
    statement (a rebuilt table's keys). Without the plan's estimate of its rows the run
    records no strategy: seconds without rows teach nothing."""
    keys = ctx.compiled.keys
    work = None if ctx.costs is None else (ctx.costs.full_work if strategy == FULL else ctx.costs.incremental_work)
    before = ctx.stats.rows if ctx.stats is not None else None
    table_rows: exp.Expr = exp.null()
    known = ctx.stats.distinct_keys if ctx.stats is not None else None
    distinct: exp.Expr = exp.Literal.number(known) if known is not None else exp.null()
    if strategy == FULL and ctx.compiled.model.config.materialized != "view":
        table_rows = placeholder(WRITTEN)
        counted = distinct_keys_query(ctx.physical.to_table(), keys.key or [], keys.unique, ctx.dialect)
        if len(counted.selects) > 1:
            distinct = exp.Subquery(this=exp.select(counted.selects[1].copy()).from_(ctx.physical.to_table()))
    elif strategy == INCREMENTAL and before is not None:
        kept: exp.Expr = exp.Literal.number(before)
        if not appends:  # the old images are the rows replaced
            kept = exp.Sub(this=kept, expression=placeholder(OLD_ROWS))
        table_rows = exp.Add(this=kept, expression=placeholder(NEW_ROWS))
    if keys.unique:
        distinct = table_rows.copy()
    return {
        "strategy": strategy if work is not None else "",
        "seconds": exp.Div(this=placeholder(MICROSECONDS), expression=exp.Literal.number(1e6)),
        "rows_read": work.rows_read if work is not None else 0,
        "rows_written": work.rows_written if work is not None else 0,
        "table_rows": table_rows,
        "distinct_keys": distinct,
    }


def bookkeeping(ctx: ModelContext, columns: list[str], strategy: str, appends: bool = False) -> list[Statement]:
    """The batch (with the run's cost, ``_run_cost``), the watermarks and (when it changed) the
    model's record: two statements for a model run again unchanged, since a build runs this
    once per model. The batch's kind and row count are bound when it runs
    (``steps.batch_record``). In a transaction group the batch and the watermarks are
    written for all its steps at once (``Statement.grouped``)."""
    name = str(ctx.compiled.model.ref)
    inputs = {str(ref): schema for ref, schema in (ctx.compiled.input_schemas or {}).items()}
    record = RelationState(
        ctx.compiled.fingerprint, dict.fromkeys(columns, ""), ctx.compiled.keys.key, None, inputs=inputs
    )
    stored = ctx.state
    unchanged = stored == record and stored is not None and list(stored.columns or {}) == columns
    statements = [] if unchanged else [planned(s, "bookkeeping", True) for s in save_relation_statements(name, record)]
    cost = run_cost(ctx, strategy, appends)
    batch = add_batch_statement(name, ctx.batch, placeholder(KIND), placeholder(ROWS), cost)
    statements.append(Statement(batch, "bookkeeping", transaction=True, grouped="row"))
    watermarks = (
        [update_watermarks_statement(name, ctx.watermarks)]
        if ctx.watermarks_stored and unchanged
        else save_watermark_statements(name, ctx.watermarks)
    )
    statements += [Statement(s, "bookkeeping", transaction=True, grouped="covered") for s in watermarks]
    return statements


def check_unique_key(ctx: ModelContext) -> list[Statement]:
    """A duplicate of the declared ``unique_key`` fails the model (the executor raises)."""
    declared = list(ctx.compiled.model.config.unique_key)
    if not declared:
        return []
    duplicates = (
        exp.select(*columns_of(declared))
        .from_(ctx.physical.to_table())
        .group_by(*columns_of(declared))
        .having(exp.func("count", exp.Star()) > 1)
        .limit(1)
    )
    return [Statement(duplicates, "check unique_key", kind="unique", transaction=True)]


def audit_point(table: TableRef, columns: list[str], rest: exp.Select | None, message: str, tx: bool) -> Statement:
    return Statement(
        None,
        "audits on the rows about to be published",
        kind="audit",
        transaction=tx,
        audit=AuditPoint(table, columns, rest, message),
    )


def count_statement(query: exp.Query, binds: str, purpose: str) -> Statement:
    return Statement(
        exp.select(exp.func("count", exp.Star())).from_(query.subquery("c")), purpose, kind="count", binds=binds
    )


def let(name: str, value: int | str) -> Statement:
    return Statement(None, f"{name} = {value}", kind="let", binds=name, value=value, transaction=True)


@dataclass
class ChangeSources:
    """The rows a model's changed inputs expose, as subqueries to substitute into it."""

    ctx: ModelContext
    changes: dict[TableRef, InputChange]
    resolve: Callable[[exp.Table], TableRef | None]

    def _ref(self, table: exp.Table) -> TableRef:
        ref = self.resolve(table)
        assert ref is not None
        return ref

    def is_changed(self, table: exp.Table) -> bool:
        ref = self.resolve(table)
        return ref is not None and ref in self.changes

    def changed(self, table: exp.Table) -> exp.Query:
        """Old and new images of the pending batches."""
        ref = self._ref(table)
        change = self.changes[ref]
        return changed_rows(change_log(ref), self.ctx.input_columns[ref], change.after, change.upto)

    def everything(self, table: exp.Table) -> exp.Query:
        """Current rows plus old images: a superset of the input before and after."""
        ref = self._ref(table)
        change = self.changes[ref]
        names = self.ctx.input_columns[ref]
        old = changed_rows(change_log(ref), names, change.after, change.upto, old_only=True)
        return exp.union(select_from(self.ctx.physical_of.get(ref, ref), names), old, distinct=False)


def mentions(tables: set[tuple[str, str]] | frozenset[tuple[str, str]], ref: TableRef) -> bool:
    return (ref.schema, ref.name) in tables or ("", ref.name) in tables


def single_changed_input(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """One changed input, not changed as a whole, read once, not on a LEFT JOIN's nullable
    side: the model is linear in it (each of its rows maps to the model's rows alone)."""
    if len(changes) != 1:
        return False
    ((ref, change),) = changes.items()
    return (
        not change.full
        and not mentions(keys.nullable_tables, ref)
        and keys.occurrences.get((ref.schema, ref.name), 0) + keys.occurrences.get(("", ref.name), 0) == 1
    )


def single_appended_input(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """``single_changed_input``, only appended to."""
    return single_changed_input(keys, changes) and all(change.appends_only for change in changes.values())


def covered(partitions: list[tuple[str, frozenset[tuple[str, str]]]], changes: dict[TableRef, InputChange]) -> bool:
    """One of ``partitions`` (``KeyAnalysis.partitions``) anchors every changed input."""
    return any(all(mentions(tables, ref) for ref in changes) for _, tables in partitions)


def partitioned_form(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """The signed form reads the query as written per touched partition (``KeyAnalysis.written``):
    one of its partitions anchors every changed input."""
    return keys.written is not None and covered(keys.partitions, changes)


def partitioned_keys(keys: KeyAnalysis, changes: dict[TableRef, InputChange]) -> bool:
    """A row-level model with a changed input read in a subquery expression, whose changes
    one partition anchors: its affected keys come from the touched partitions' rows
    (``signed_statements.partition_key_statements``), not from the changed rows alone."""
    return any(mentions(keys.subquery_tables, ref) for ref in changes) and covered(keys.row_partitions, changes)


Resolve = Callable[[exp.Table], TableRef | None]


@dataclass(frozen=True)
class Strategy:
    """One exact incremental form: when it applies (the model's key analysis, its inputs'
    changes, the target), why in the plan's words, and the statements that carry it out."""

    name: str
    applies: Callable[[KeyAnalysis, dict[TableRef, InputChange], Capabilities], bool]
    reason: Callable[[str, KeyAnalysis, dict[TableRef, InputChange]], str]
    statements: Callable[[ModelContext, dict[TableRef, InputChange], Resolve], list[Item]]
