"""The statements of one model's step: a full rebuild, or replacing the keys its input
changes affect. Built at plan time from the model, its inputs' batch ranges and the
target's capabilities; the executor only runs them (``planning/steps.py``).

Both paths write the model's table, its change log (old and new images for its own
consumers), its batch record, its watermarks and its state in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from sqlorch.adapters.base import Capabilities
from sqlorch.audits import hooks as audit_hooks
from sqlorch.execution.statements import (
    changed_rows,
    columns_of,
    count_rows,
    create_change_log,
    create_table_as,
    drop_table,
    insert_into,
    replace_statements,
    select_from,
    with_images,
)
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.cost import FULL, INCREMENTAL, Costs
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.planner import InputChange
from sqlorch.planning.rewrites.affected_keys import build_affected_keys
from sqlorch.planning.rewrites.merge_keys import build_key_merge, mark_present
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.restrict_to_keys import key_match, restrict_to_keys
from sqlorch.planning.rewrites.substitute_occurrence import keep_only_branches_with, substitute_occurrence
from sqlorch.planning.steps import (
    KIND,
    MICROSECONDS,
    NEW_ROWS,
    OLD_ROWS,
    ROWS,
    WRITTEN,
    AuditPoint,
    Branch,
    Choice,
    Item,
    Rule,
    Statement,
    placeholder,
)
from sqlorch.refs import TableRef
from sqlorch.state.history import TableStats, distinct_keys_query
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
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


def _run(statement: exp.Expr, purpose: str, transaction: bool = False, binds: str = "") -> Statement:
    return Statement(statement, purpose, transaction=transaction, binds=binds)


def _creates(ctx: ModelContext, create: exp.Create, purpose: str, transaction: bool = False) -> list[Statement]:
    """A (possibly ``OR REPLACE``) CREATE in the form the warehouse supports."""
    return [_run(s, purpose, transaction) for s in replace_statements(create, ctx.capabilities)]


def _stored_columns(ctx: ModelContext) -> list[str]:
    """The table's columns, from the model's record: an incremental run only happens when the
    record matches the compiled model (``planner.decide_model``), else from the catalog read
    before the build."""
    if ctx.state is not None and ctx.state.columns:
        return list(ctx.state.columns)
    return list(ctx.previous or {})


def _scratch(ctx: ModelContext, part: str) -> TableRef:
    return work_table(ctx.compiled.model.ref, part, temporary=ctx.capabilities.temp_tables)


def _drop_scratch(ctx: ModelContext, tables: list[TableRef]) -> list[Statement]:
    """A temporary scratch table is left to the next run's ``CREATE OR REPLACE`` (or the end of
    the connection): one statement less per table. Dropped even after a failure."""
    if ctx.capabilities.temp_tables:
        return []
    return [Statement(drop_table(table), "drop scratch table", always=True) for table in tables]


def _clear_leftovers(ctx: ModelContext, log: TableRef) -> list[Statement]:
    """Change-log rows of this batch number written by a run that died before recording
    the batch: only possible where a transaction can commit part way (no transactions, or DDL
    that commits the open one), so elsewhere the statement is not planned."""
    if ctx.capabilities.transactions and ctx.capabilities.transactional_ddl:
        return []
    where = exp.column(BATCH_COLUMN, quoted=True) >= ctx.batch
    return [_run(exp.delete(log.to_table(), where=where), "clear change-log rows of a crashed run", True)]


def _run_cost(ctx: ModelContext, strategy: str, appends: bool = False) -> dict[str, Any]:
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


def _bookkeeping(ctx: ModelContext, columns: list[str], strategy: str, appends: bool = False) -> list[Statement]:
    """The batch (with the run's cost, ``_run_cost``), the watermarks and (when it changed) the
    model's record: two statements for a model run again unchanged, since a build runs this
    once per model. The batch's kind and row count are bound when it runs
    (``steps.batch_record``)."""
    name = str(ctx.compiled.model.ref)
    record = RelationState(ctx.compiled.fingerprint, dict.fromkeys(columns, ""), ctx.compiled.keys.key, None)
    stored = ctx.state
    unchanged = stored == record and stored is not None and list(stored.columns or {}) == columns
    statements = [] if unchanged else save_relation_statements(name, record)
    cost = _run_cost(ctx, strategy, appends)
    statements.append(add_batch_statement(name, ctx.batch, placeholder(KIND), placeholder(ROWS), cost))
    if ctx.watermarks_stored and unchanged:
        statements.append(update_watermarks_statement(name, ctx.watermarks))
    else:
        statements.extend(save_watermark_statements(name, ctx.watermarks))
    return [_run(s, "bookkeeping", True) for s in statements]


def _check_unique_key(ctx: ModelContext) -> list[Statement]:
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


def _audit(table: TableRef, columns: list[str], rest: exp.Select | None, message: str, tx: bool) -> Statement:
    return Statement(
        None,
        "audits on the rows about to be published",
        kind="audit",
        transaction=tx,
        audit=AuditPoint(table, columns, rest, message),
    )


def _count(query: exp.Query, binds: str, purpose: str) -> Statement:
    return Statement(
        exp.select(exp.func("count", exp.Star())).from_(query.subquery("c")), purpose, kind="count", binds=binds
    )


def _let(name: str, value: int | str) -> Statement:
    return Statement(None, f"{name} = {value}", kind="let", binds=name, value=value, transaction=True)


def _multiset_minus(left: TableRef, right: TableRef, columns: list[str]) -> exp.Query:
    return exp.except_(select_from(left, columns), select_from(right, columns), distinct=False)


def full_statements(ctx: ModelContext, may_diff: bool, strategy: str, reason: str) -> list[Item]:
    """Rebuild the table. Where the warehouse can diff multisets and the columns did not
    change, the old and new rows are diffed into the change log so that consumers stay
    incremental; otherwise the batch is ``full`` and consumers rebuild. The batch's row
    count is the diff's size for a ``delta``; the rows written are the table's. Whether the
    rebuilt table kept its column types is only known once it exists: a ``Choice``."""
    model = ctx.compiled.model
    view = model.config.materialized == "view"
    log = change_log(model.ref)
    old = work_table(model.ref, "old")
    columns = [name.lower() for name in ctx.compiled.columns or {}]
    previous = ctx.previous if may_diff else None
    diff = (
        not view
        and model.config.materialized == "incremental"
        and ctx.capabilities.except_all
        and previous is not None
        and ctx.log_exists
    )
    out: list[Item] = []
    # --- audits: in the transaction where DDL rolls back, else a scratch table first
    audit_here = ctx.audited and audit_hooks.audits_in_transaction(ctx.capabilities)
    sql: exp.Query = ctx.compiled.physical_sql
    scratch = None
    if ctx.audited and not audit_here:
        scratch = work_table(model.ref, "audit")
        out += _creates(ctx, create_table_as(scratch, sql), "the new rows, to audit before publishing")
        out.append(_audit(scratch, columns, None, "the scratch table was not published", False))
        if not view:
            sql = select_from(scratch, columns)
    # ---
    if diff and previous is not None:
        out += _creates(ctx, create_table_as(old, select_from(ctx.physical, list(previous))), "keep the old rows", True)
    out += _creates(ctx, create_table_as(ctx.physical, sql, view=view), "rebuild", True)
    if audit_here:
        out.append(_audit(ctx.physical, columns, None, "the transaction was rolled back", True))
    if view:
        out.append(_let(WRITTEN, 0))
    else:
        out.append(Statement(count_rows(ctx.physical), "count the rows written", "count", True, WRITTEN))
        out += _check_unique_key(ctx)
    if diff and previous is not None:
        all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
        delta: list[Item] = [
            *_clear_leftovers(ctx, log),
            _run(
                insert_into(
                    log, all_columns, with_images(_multiset_minus(old, ctx.physical, columns), columns, ctx.batch, True)
                ),
                "change log: old rows gone",
                True,
            ),
            _run(
                insert_into(
                    log,
                    all_columns,
                    with_images(_multiset_minus(ctx.physical, old, columns), columns, ctx.batch, False),
                ),
                "change log: new rows",
                True,
            ),
            Statement(
                count_rows(log).where(exp.column(BATCH_COLUMN, quoted=True).eq(ctx.batch)),
                "count the batch",
                "count",
                True,
                ROWS,
            ),
            _let(KIND, "delta"),
        ]
        whole: list[Item] = [
            *_creates(ctx, create_change_log(log, ctx.physical, columns), "new change log", True),
            _let(KIND, "full"),
        ]
        same = Rule("same_columns", columns=tuple(previous.items()))
        out.append(
            Choice(
                [
                    Branch("diff", [same], "full", strategy, reason, delta),
                    Branch("whole", [], "full", strategy, f"{reason}; column types changed", whole),
                ],
                transaction=True,
            )
        )
        out.append(_run(drop_table(old), "drop the old rows", True))
    else:
        if model.config.materialized == "incremental":
            out += _creates(ctx, create_change_log(log, ctx.physical, columns), "new change log", True)
        out.append(_let(KIND, "full"))
    out += _bookkeeping(ctx, columns, FULL)
    if scratch is not None:
        out.append(Statement(drop_table(scratch), "drop the audited scratch table", always=True))
    return out


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


def insert_only_statements(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> list[Item]:
    """Append the model evaluated over the appended input rows (row-preserving models)."""
    model = ctx.compiled.model
    assert ctx.compiled.keys.inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    appended, target = substitute_occurrence(
        ctx.compiled.keys.inlined, 0, sources.is_changed, sources.changed, sources.everything
    )
    appended = rename_relations(keep_only_branches_with(appended, target), ctx.physical_of, ctx.default_schema)
    rows_table = _scratch(ctx, "rows")
    columns = _stored_columns(ctx)
    out: list[Item] = []
    out += _creates(ctx, create_table_as(rows_table, appended, temporary=ctx.capabilities.temp_tables), "appended rows")
    if ctx.audited:  # the appended rows, before anything is written
        rest = audit_hooks.stored_rest(ctx.physical, columns, None)
        out.append(_audit(rows_table, columns, rest, "nothing was written", False))
    new_rows = select_from(rows_table, columns)
    counted = ctx.capabilities.row_counts
    if not counted:
        out.append(Statement(count_rows(rows_table), "count the appended rows", "count", binds=NEW_ROWS))
    log_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    out += _clear_leftovers(ctx, change_log(model.ref))
    out.append(
        _run(
            insert_into(change_log(model.ref), log_columns, with_images(new_rows, columns, ctx.batch, False)),
            "change log: new rows",
            True,
        )
    )
    out.append(_run(insert_into(ctx.physical, columns, new_rows), "append", True, NEW_ROWS if counted else ""))
    out += _check_unique_key(ctx)
    out.append(_let(KIND, "append"))
    out += _bookkeeping(ctx, columns, INCREMENTAL, appends=True)
    out += _drop_scratch(ctx, [rows_table])
    return out


def _combine(kind: str, stored: exp.Expr, added: exp.Expr) -> exp.Expr:
    """The aggregate over stored and appended rows, from the two partial aggregates."""
    if kind == "count":
        return exp.Add(this=exp.func("coalesce", stored, exp.Literal.number(0)), expression=added)
    either = exp.Case(
        ifs=[
            exp.If(this=stored.is_(exp.null()), true=added.copy()),
            exp.If(this=added.is_(exp.null()), true=stored.copy()),
        ]
    )
    if kind == "sum":
        return either.else_(exp.Add(this=stored.copy(), expression=added.copy()))
    better = exp.LT if kind == "min" else exp.GT
    either.append("ifs", exp.If(this=better(this=added.copy(), expression=stored.copy()), true=added.copy()))
    return either.else_(stored.copy())


def _partial_aggregate_rows(ctx: ModelContext, sources: ChangeSources) -> tuple[exp.Query, exp.Query]:
    """(affected keys, new rows): the appended rows aggregated per group, combined with the
    stored group where there is one."""
    keys = ctx.compiled.keys
    assert keys.inlined is not None and keys.key is not None and keys.distributive is not None
    partial, _ = substitute_occurrence(keys.inlined, 0, sources.is_changed, sources.changed, sources.everything)
    partial = rename_relations(partial, ctx.physical_of, ctx.default_schema)
    names = [s.alias_or_name.lower() for s in keys.inlined.selects]
    combined = (
        exp.select(
            *[
                exp.column(n, table="s", quoted=True)
                if n in keys.key
                else exp.alias_(
                    _combine(
                        keys.distributive[n],
                        exp.column(n, table="t", quoted=True),
                        exp.column(n, table="s", quoted=True),
                    ),
                    n,
                    quoted=True,
                )
                for n in names
            ]
        )
        .from_(partial.subquery("s"))
        .join(
            ctx.physical.to_table(alias="t"),
            on=null_safe_match("s", "t", keys.key),
            join_type="LEFT",
        )
    )
    affected = exp.select(*[exp.column(n, quoted=True) for n in keys.key]).from_(partial.subquery("p"))
    return affected, combined


@dataclass(frozen=True)
class PreparedRows:
    """Affected keys and recomputed rows another strategy worked out (``execution/signed.py``):
    the statements that build its scratch tables (``before``), those that commit with the
    model (``during``), and its scratch tables."""

    affected: exp.Query | None
    recomputed: exp.Query
    before: list[Item]
    during: list[Item]
    scratch: list[TableRef]


def incremental_statements(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
    fold_appends: bool = False,
    prepared: PreparedRows | None = None,
) -> list[Item]:
    """Replace the affected keys with their recomputed rows (MERGE when the key is unique,
    DELETE + INSERT otherwise). With ``fold_appends`` the new rows come from aggregating
    only the appended input rows into the stored groups (see ``keys.distributive``); with
    ``prepared``, the affected keys and rows are those given."""
    model = ctx.compiled.model
    keys = ctx.compiled.keys
    assert keys.key is not None and keys.inlined is not None
    key = keys.key
    capabilities = ctx.capabilities
    temporary = capabilities.temp_tables
    keys_table, rows_table = _scratch(ctx, "keys"), _scratch(ctx, "rows")
    columns = _stored_columns(ctx)
    log = change_log(model.ref)
    sources = ChangeSources(ctx, changes, resolve)
    out: list[Item] = []

    keys_ref = keys_table.to_table(alias="k")
    target_match: exp.Expr = exp.true()
    if prepared is not None:
        out += prepared.before
        recomputed = prepared.recomputed
        if key and prepared.affected is not None:
            out += _creates(ctx, create_table_as(keys_table, prepared.affected, temporary=temporary), "affected keys")
    elif fold_appends:
        affected, recomputed = _partial_aggregate_rows(ctx, sources)
        out += _creates(ctx, create_table_as(keys_table, affected, temporary=temporary), "affected keys")
    elif key:
        affected = build_affected_keys(keys.inlined, key, sources.is_changed, sources.changed, sources.everything)
        affected = rename_relations(affected, ctx.physical_of, ctx.default_schema)
        out += _creates(ctx, create_table_as(keys_table, affected, temporary=temporary), "affected keys")
        recomputed = restrict_to_keys(ctx.compiled.physical_sql, key, keys_ref)
    else:
        recomputed = ctx.compiled.physical_sql
    if key:
        target_match = key_match(keys_ref, [(n, exp.column(n, table=ctx.physical.name, quoted=True)) for n in key])
    merge = keys.unique and bool(key) and capabilities.merge_in_transaction
    rows_query = mark_present(recomputed) if merge else recomputed
    out += _creates(ctx, create_table_as(rows_table, rows_query, temporary=temporary), "recomputed rows")
    stored, changed = _scratch(ctx, "old"), _scratch(ctx, "changed")
    diff = bool(key) and capabilities.except_all
    if ctx.audited:  # the recomputed rows of the affected keys, before anything is written
        rest = audit_hooks.stored_rest(ctx.physical, columns, target_match) if key else None
        out.append(_audit(rows_table, columns, rest, "nothing was written", False))
    old_images = select_from(ctx.physical, columns, ctx.physical.name).where(target_match)
    new_images = select_from(rows_table, columns)
    if diff:
        # Most rows of an affected key usually come back unchanged (one new event in a
        # user's window partition): write only the rows that really differ. The stored
        # rows of the affected keys are read once: finding them scans the whole table.
        out += _creates(ctx, create_table_as(stored, old_images, temporary=temporary), "stored rows of the keys")
        differ = changed_values(stored, rows_table, columns)
        out += _creates(ctx, create_table_as(changed, differ, temporary=temporary), "rows that differ")
        old_images = select_from(stored, columns, "o").where(same_value(changed, columns, "o"))
        logged_new = select_from(rows_table, columns, "r").where(same_value(changed, columns, "r"))
    else:
        logged_new = new_images
    # Counted by the log inserts where the driver reports it, else before the transaction:
    # some warehouses run a transaction as one script.
    counted = capabilities.row_counts
    if not counted:
        out.append(_count(old_images, OLD_ROWS, "count the old images"))
        out.append(_count(logged_new, NEW_ROWS, "count the new images"))
    out += _clear_leftovers(ctx, log)
    all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    logged_old_rows = with_images(old_images, columns, ctx.batch, True)
    logged_new_rows = with_images(logged_new, columns, ctx.batch, False)
    out.append(
        _run(
            insert_into(log, all_columns, logged_old_rows), "change log: old images", True, OLD_ROWS if counted else ""
        )
    )
    out.append(
        _run(
            insert_into(log, all_columns, logged_new_rows), "change log: new images", True, NEW_ROWS if counted else ""
        )
    )
    if merge:
        out.append(_run(build_key_merge(ctx.physical, rows_table, keys_table, key, columns), "apply: merge keys", True))
    elif diff:
        out.append(
            _run(
                exp.delete(ctx.physical.to_table(), where=same_value(changed, columns, ctx.physical.name)),
                "apply: delete changed rows",
                True,
            )
        )
        out.append(_run(insert_into(ctx.physical, columns, logged_new), "apply: insert changed rows", True))
    else:
        out.append(_run(exp.delete(ctx.physical.to_table(), where=target_match), "apply: delete the keys' rows", True))
        out.append(_run(insert_into(ctx.physical, columns, new_images), "apply: insert recomputed rows", True))
    out += prepared.during if prepared is not None else []
    out += _check_unique_key(ctx)
    out += _bookkeeping(ctx, columns, INCREMENTAL)
    out += _drop_scratch(ctx, [keys_table, rows_table, stored, changed, *(prepared.scratch if prepared else [])])
    return out


# Pending input rows up to which a run replaces its keys without scratch tables (below).
SMALL_CHANGE_ROWS = 1_000


def small_change_possible(ctx: ModelContext, changes: dict[TableRef, InputChange], fold_appends: bool) -> bool:
    """Whether ``small_statements`` may replace ``incremental_statements`` when the change is
    at most ``SMALL_CHANGE_ROWS`` rows: computing the affected keys again in each statement
    then costs less than the statements that would keep them in scratch tables (~1 ms each on
    DuckDB, a round trip elsewhere), the fixed cost of a model in a long chain."""
    keys = ctx.compiled.keys
    return (
        bool(keys.key)
        and not fold_appends
        and not ctx.audited
        and ctx.capabilities.row_counts
        and not any(change.full for change in changes.values())
    )


def small_statements(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> list[Item]:
    """``incremental_statements`` for a small change: the affected keys in one scratch table,
    then one transaction of one log insert (old and new images), DELETE + INSERT of the
    affected keys (their row counts are the images' counts) and bookkeeping, the recomputed
    rows computed where they are written (twice, for the log and the table). Every row of an
    affected key is logged, old and new, as where the warehouse cannot diff: a few unchanged
    rows cost less than the three scratch tables that would find them. (A CTE of the keys in
    each statement instead of the table: DuckDB runs it as a correlated subquery, ten times
    slower.)"""
    keys = ctx.compiled.keys
    assert keys.key is not None and keys.inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    affected = build_affected_keys(keys.inlined, keys.key, sources.is_changed, sources.changed, sources.everything)
    affected = rename_relations(affected, ctx.physical_of, ctx.default_schema)
    keys_table = _scratch(ctx, "keys")
    out: list[Item] = []
    out += _creates(ctx, create_table_as(keys_table, affected, temporary=ctx.capabilities.temp_tables), "affected keys")
    keys_ref = keys_table.to_table(alias="k")
    recomputed = restrict_to_keys(ctx.compiled.physical_sql, keys.key, keys_ref)
    columns = _stored_columns(ctx)
    physical = ctx.physical.name
    match = key_match(keys_ref, [(n, exp.column(n, table=physical, quoted=True)) for n in keys.key])
    old_images = select_from(ctx.physical, columns, physical).where(match)
    log = change_log(ctx.compiled.model.ref)
    all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    out += _clear_leftovers(ctx, log)
    # one log insert of both images; the DELETE and INSERT that follow count them
    logged = exp.union(
        with_images(old_images, columns, ctx.batch, True),
        with_images(recomputed, columns, ctx.batch, False),
        distinct=False,
    )
    out.append(_run(insert_into(log, all_columns, logged), "change log: old and new images", True))
    delete = exp.delete(ctx.physical.to_table(), where=match.copy())
    out.append(_run(delete, "apply: delete the keys' rows", True, OLD_ROWS))
    new_rows = exp.select(*columns_of(columns, "r")).from_(recomputed.subquery("r"))
    out.append(_run(insert_into(ctx.physical, columns, new_rows), "apply: insert recomputed rows", True, NEW_ROWS))
    out += _check_unique_key(ctx)
    out += _bookkeeping(ctx, columns, INCREMENTAL)
    out += _drop_scratch(ctx, [keys_table])
    return out


SIGN_COLUMN = "_sqlorch_sign"  # +1 for a row of the new rows, -1 for a stored one


def changed_values(old: TableRef, new: TableRef, columns: list[str]) -> exp.Select:
    """The distinct rows whose number of copies differs between two tables, in one grouped
    pass over both (EXCEPT ALL each way costs two, and DuckDB's is several times slower).
    Replacing every copy of these values, and only them, turns ``old`` into ``new``.
    GROUP BY puts NULLs together, as the NULL-safe comparison in ``same_value`` does."""
    sign = exp.column(SIGN_COLUMN, quoted=True)
    signed = exp.union(
        select_from(new, columns).select(exp.Literal.number(1).as_(SIGN_COLUMN, quoted=True)),
        select_from(old, columns).select(exp.Literal.number(-1).as_(SIGN_COLUMN, quoted=True)),
        distinct=False,
    )
    return (
        exp.select(*columns_of(columns, "d"))
        .from_(signed.subquery("d"))
        .group_by(*columns_of(columns, "d"))
        .having(exp.func("sum", sign).neq(0))
    )


def same_value(values: TableRef, columns: list[str], row_alias: str) -> exp.Exists:
    """``EXISTS`` a row of ``values`` equal, column by column and NULL-safe, to the row aliased ``row_alias``."""
    return exp.Exists(
        this=exp.select(exp.Literal.number(1))
        .from_(values.to_table(alias="v"))
        .where(null_safe_match("v", row_alias, columns))
    )
