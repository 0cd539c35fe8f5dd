"""Running one model: a full rebuild, or replacing the keys its input changes affect.

Both paths write the model's table, its change log (old and new images for its own
consumers), its batch record, its watermarks and its state in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from sqlorch.adapters.base import Adapter
from sqlorch.audits import hooks as audit_hooks
from sqlorch.audits.run import ModelAudits
from sqlorch.compiler import CompiledModel
from sqlorch.errors import SqlorchError
from sqlorch.execution.merge import build_key_merge, mark_present
from sqlorch.execution.statements import (
    changed_rows,
    columns_of,
    count_rows,
    create_change_log,
    create_table_as,
    drop_table,
    execute_create,
    insert_into,
    select_from,
    with_images,
)
from sqlorch.planning.cost import FULL, INCREMENTAL, Work
from sqlorch.planning.planner import InputChange
from sqlorch.planning.rewrites.affected_keys import build_affected_keys
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.restrict_to_keys import key_match, restrict_to_keys
from sqlorch.planning.rewrites.substitute_occurrence import keep_only_branches_with, substitute_occurrence
from sqlorch.refs import TableRef
from sqlorch.state.history import RunCost, TableStats, distinct_keys_query
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
    """What a model run needs to know about the world around it."""

    compiled: CompiledModel
    physical: TableRef
    physical_of: dict[TableRef, TableRef]  # project relation -> physical, models and seeds
    input_columns: dict[TableRef, list[str]]
    watermarks: dict[str, int]  # input -> batch consumed after this run
    batch: int  # the batch number this run writes
    default_schema: str
    audits: ModelAudits | None = None  # write-audit-publish, see sqlorch.audits.hooks
    state: RelationState | None = None  # the model's record before this run
    watermarks_stored: bool = False  # every input has a watermark row already (moved by one UPDATE)
    started: float | None = None  # ``time.perf_counter()`` when the run began, for its recorded cost
    work: Work | None = None  # the rows the plan estimated this run reads and writes
    stats: TableStats | None = None  # the table as the model's last run left it


def _grown(ctx: ModelContext, removed: int, added: int) -> int | None:
    """The table's rows after an incremental run, from its rows before and the rows it replaced."""
    before = ctx.stats.rows if ctx.stats is not None else None
    return None if before is None else max(0, before - removed + added)


@dataclass(frozen=True)
class Written:
    """What a model run wrote: the batch's ``rows`` (its change-log size) and ``kind``, the
    table's columns, which its consumers in this build read without asking the catalog, and
    ``written``, the rows written to the table (``ModelResult.rows``; a full rebuild writes
    every row, while its batch may hold only the diff)."""

    rows: int
    kind: str
    columns: list[str]
    written: int


def _stored_columns(adapter: Adapter, ctx: ModelContext) -> list[str]:
    """The table's columns, from the model's record: an incremental run only happens when the
    record matches the compiled model (``planner.decide_model``), so no catalog query."""
    if ctx.state is not None and ctx.state.columns:
        return list(ctx.state.columns)
    return list(adapter.columns(ctx.physical) or {})


def _scratch(adapter: Adapter, ref: TableRef, part: str) -> TableRef:
    return work_table(ref, part, temporary=adapter.capabilities.temp_tables)


def _drop_scratch(adapter: Adapter, tables: list[TableRef]) -> None:
    """A temporary scratch table is left to the next run's ``CREATE OR REPLACE`` (or the end of
    the connection): one statement less per table."""
    if adapter.capabilities.temp_tables:
        return
    for table in tables:
        adapter.execute(drop_table(table))


def _written(count: int | None, query: exp.Expr, adapter: Adapter) -> int:
    """The rows an INSERT or DELETE wrote, as the driver reported it (``capabilities.row_counts``)."""
    if count is None:
        raise SqlorchError(f"the {adapter.dialect} driver reported no row count for: {query.sql()[:80]}")
    return count


def _clear_leftovers(adapter: Adapter, log: TableRef, batch: int) -> None:
    """Change-log rows of this batch number written by a run that died before recording
    the batch: only possible where a transaction can commit part way (no transactions, or DDL
    that commits the open one), so elsewhere the statement is not run."""
    if adapter.capabilities.transactions and adapter.capabilities.transactional_ddl:
        return
    adapter.execute(exp.delete(log.to_table(), where=exp.column(BATCH_COLUMN, quoted=True) >= batch))


def _run_cost(ctx: ModelContext, strategy: str, table_rows: int | None, distinct_keys: int | None) -> RunCost:
    """What the run cost, for the cost model's history (``state/history.py``). Without the
    plan's estimate of its rows (the build ran another form than planned) it keeps only the
    table's statistics: seconds without rows teach nothing."""
    seconds = time.perf_counter() - ctx.started if ctx.started is not None else 0.0
    if ctx.stats is not None and distinct_keys is None:
        distinct_keys = ctx.stats.distinct_keys  # an incremental run leaves the key count about where it was
    if ctx.compiled.keys.unique and table_rows is not None:
        distinct_keys = table_rows
    work = ctx.work
    return RunCost(
        strategy if work is not None else "",
        seconds,
        work.rows_read if work is not None else 0,
        work.rows_written if work is not None else 0,
        table_rows,
        distinct_keys,
    )


def _bookkeeping(
    adapter: Adapter,
    ctx: ModelContext,
    kind: str,
    rows: int,
    columns: list[str],
    cost: RunCost | None = None,
) -> None:
    """The batch (with the run's ``cost``), the watermarks and (when it changed) the model's
    record: two statements for a model run again unchanged, since a build runs this once
    per model."""
    name = str(ctx.compiled.model.ref)
    record = RelationState(ctx.compiled.fingerprint, dict.fromkeys(columns, ""), ctx.compiled.keys.key, None)
    stored = ctx.state
    unchanged = stored == record and stored is not None and list(stored.columns or {}) == columns
    statements = [] if unchanged else save_relation_statements(name, record)
    statements.append(add_batch_statement(name, ctx.batch, kind, rows, cost))
    if ctx.watermarks_stored and unchanged:
        statements.append(update_watermarks_statement(name, ctx.watermarks))
    else:
        statements.extend(save_watermark_statements(name, ctx.watermarks))
    for statement in statements:
        adapter.execute(statement)


def _check_unique_key(adapter: Adapter, ctx: ModelContext) -> None:
    declared = list(ctx.compiled.model.config.unique_key)
    if not declared:
        return
    duplicates = adapter.fetch(
        exp.select(*columns_of(declared))
        .from_(ctx.physical.to_table())
        .group_by(*columns_of(declared))
        .having(exp.func("count", exp.Star()) > 1)
        .limit(1)
    )
    if duplicates:
        raise SqlorchError(
            f"unique_key ({', '.join(declared)}) is not unique: {duplicates[0]} appears more than once",
            path=ctx.compiled.model.path,
            hint="fix the model's SQL or the unique_key setting",
        )


def _multiset_minus(left: TableRef, right: TableRef, columns: list[str]) -> exp.Query:
    return exp.except_(select_from(left, columns), select_from(right, columns), distinct=False)


def execute_full(adapter: Adapter, ctx: ModelContext, may_diff: bool) -> Written:
    """Rebuild the table. Where the warehouse can diff multisets and the columns did not
    change, the old and new rows are diffed into the change log so that consumers stay
    incremental; otherwise the batch is ``full`` and consumers rebuild. The batch's row
    count is the diff's size for a ``delta``; the rows written are the table's."""
    model = ctx.compiled.model
    view = model.config.materialized == "view"
    log = change_log(model.ref)
    old = work_table(model.ref, "old")
    existing = adapter.columns(ctx.physical) if may_diff else None
    previous_columns = list(existing) if existing is not None else None
    diff = (
        not view
        and model.config.materialized == "incremental"
        and adapter.capabilities.except_all
        and previous_columns is not None
        and adapter.columns(log) is not None
    )
    # --- audits: in the transaction where DDL rolls back, else a scratch table first
    audit_here = ctx.audits is not None and audit_hooks.audits_in_transaction(adapter)
    scratch = None
    if ctx.audits is not None and not audit_here:
        scratch = audit_hooks.audit_in_scratch(adapter, ctx.audits, model.ref, ctx.compiled.physical_sql)
    sql = audit_hooks.published_from(scratch, adapter) if scratch and not view else ctx.compiled.physical_sql
    # ---
    with adapter.transaction():
        if diff:
            execute_create(adapter, create_table_as(old, select_from(ctx.physical, list(previous_columns or []))))
        execute_create(adapter, create_table_as(ctx.physical, sql, view=view))
        rebuilt = adapter.columns(ctx.physical) or {}
        columns = list(rebuilt)
        if audit_here and ctx.audits is not None:
            ctx.audits.check(adapter, ctx.physical, columns, None, "the transaction was rolled back")
        distinct: int | None = None
        if view:
            rows = written = 0
        else:
            keys = ctx.compiled.keys
            counted = adapter.fetch(
                distinct_keys_query(ctx.physical.to_table(), keys.key or [], keys.unique, adapter.dialect)
            )[0]
            rows = written = int(counted[0])
            distinct = int(counted[1]) if len(counted) > 1 and counted[1] is not None else None
        if not view:
            _check_unique_key(adapter, ctx)
        kind = "full"
        # Types too: a change log of the old types would round the new values.
        if diff and rebuilt == existing:
            _clear_leftovers(adapter, log, ctx.batch)
            all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
            adapter.execute(
                insert_into(
                    log, all_columns, with_images(_multiset_minus(old, ctx.physical, columns), columns, ctx.batch, True)
                )
            )
            adapter.execute(
                insert_into(
                    log,
                    all_columns,
                    with_images(_multiset_minus(ctx.physical, old, columns), columns, ctx.batch, False),
                )
            )
            rows = int(adapter.fetch(count_rows(log).where(exp.column(BATCH_COLUMN, quoted=True).eq(ctx.batch)))[0][0])
            kind = "delta"
        elif model.config.materialized == "incremental":
            execute_create(adapter, create_change_log(log, ctx.physical, columns))
        if diff:
            adapter.execute(drop_table(old))
        _bookkeeping(adapter, ctx, kind, rows, columns, _run_cost(ctx, FULL, None if view else written, distinct))
    if scratch is not None:
        adapter.execute(drop_table(scratch))
    return Written(rows, kind, columns, written)


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


def execute_insert_only(
    adapter: Adapter,
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> Written:
    """Append the model evaluated over the appended input rows (row-preserving models)."""
    model = ctx.compiled.model
    assert ctx.compiled.keys.inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    appended, target = substitute_occurrence(
        ctx.compiled.keys.inlined, 0, sources.is_changed, sources.changed, sources.everything
    )
    appended = rename_relations(keep_only_branches_with(appended, target), ctx.physical_of, ctx.default_schema)
    rows_table = _scratch(adapter, model.ref, "rows")
    columns = _stored_columns(adapter, ctx)
    execute_create(adapter, create_table_as(rows_table, appended, temporary=adapter.capabilities.temp_tables))
    try:
        if ctx.audits is not None:  # the appended rows, before anything is written
            rest = audit_hooks.stored_rest(ctx.physical, columns, None)
            ctx.audits.check(adapter, rows_table, columns, rest, "nothing was written")
        new_rows = select_from(rows_table, columns)
        counted = adapter.capabilities.row_counts
        count = 0 if counted else int(adapter.fetch(count_rows(rows_table))[0][0])
        with adapter.transaction():
            _clear_leftovers(adapter, change_log(model.ref), ctx.batch)
            log_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
            adapter.execute(
                insert_into(change_log(model.ref), log_columns, with_images(new_rows, columns, ctx.batch, False))
            )
            inserted = adapter.execute(insert_into(ctx.physical, columns, new_rows))
            if counted:
                count = _written(inserted, new_rows, adapter)
            _check_unique_key(adapter, ctx)
            cost = _run_cost(ctx, INCREMENTAL, _grown(ctx, 0, count), None)
            _bookkeeping(adapter, ctx, "append", count, columns, cost)
    finally:
        _drop_scratch(adapter, [rows_table])
    return Written(count, "append", columns, count)


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
            on=exp.and_(
                *[
                    exp.NullSafeEQ(
                        this=exp.column(n, table="s", quoted=True), expression=exp.column(n, table="t", quoted=True)
                    )
                    for n in keys.key
                ]
            ),
            join_type="LEFT",
        )
    )
    affected = exp.select(*[exp.column(n, quoted=True) for n in keys.key]).from_(partial.subquery("p"))
    return affected, combined


def execute_incremental(
    adapter: Adapter,
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
    fold_appends: bool = False,
) -> Written:
    """Replace the affected keys with their recomputed rows (MERGE when the key is unique,
    DELETE + INSERT otherwise). With ``fold_appends`` the new rows come from aggregating
    only the appended input rows into the stored groups (see ``keys.distributive``)."""
    model = ctx.compiled.model
    keys = ctx.compiled.keys
    assert keys.key is not None and keys.inlined is not None
    key = keys.key
    if key and not fold_appends and ctx.audits is None and _small(adapter, changes):
        return _replace_small(adapter, ctx, ChangeSources(ctx, changes, resolve))
    temporary = adapter.capabilities.temp_tables
    keys_table, rows_table = _scratch(adapter, model.ref, "keys"), _scratch(adapter, model.ref, "rows")
    columns = _stored_columns(adapter, ctx)
    log = change_log(model.ref)
    sources = ChangeSources(ctx, changes, resolve)

    keys_ref = keys_table.to_table(alias="k")
    target_match: exp.Expr = exp.true()
    if fold_appends:
        affected, recomputed = _partial_aggregate_rows(ctx, sources)
        execute_create(adapter, create_table_as(keys_table, affected, temporary=temporary))
    elif key:
        affected = build_affected_keys(keys.inlined, key, sources.is_changed, sources.changed, sources.everything)
        affected = rename_relations(affected, ctx.physical_of, ctx.default_schema)
        execute_create(adapter, create_table_as(keys_table, affected, temporary=temporary))
        recomputed = restrict_to_keys(ctx.compiled.physical_sql, key, keys_ref)
    else:
        recomputed = ctx.compiled.physical_sql
    if key:
        target_match = key_match(keys_ref, [(n, exp.column(n, table=ctx.physical.name, quoted=True)) for n in key])
    merge = keys.unique and bool(key) and adapter.capabilities.merge_in_transaction
    rows_query = mark_present(recomputed) if merge else recomputed
    execute_create(adapter, create_table_as(rows_table, rows_query, temporary=temporary))
    stored, changed = _scratch(adapter, model.ref, "old"), _scratch(adapter, model.ref, "changed")
    diff = bool(key) and adapter.capabilities.except_all
    try:
        if ctx.audits is not None:  # the recomputed rows of the affected keys, before anything is written
            rest = audit_hooks.stored_rest(ctx.physical, columns, target_match) if key else None
            ctx.audits.check(adapter, rows_table, columns, rest, "nothing was written")
        old_images = select_from(ctx.physical, columns, ctx.physical.name).where(target_match)
        new_images = select_from(rows_table, columns)
        if diff:
            # Most rows of an affected key usually come back unchanged (one new event in a
            # user's window partition): write only the rows that really differ. The stored
            # rows of the affected keys are read once: finding them scans the whole table.
            execute_create(adapter, create_table_as(stored, old_images, temporary=temporary))
            differ = changed_values(stored, rows_table, columns)
            execute_create(adapter, create_table_as(changed, differ, temporary=temporary))
            old_images = select_from(stored, columns, "o").where(same_value(changed, columns, "o"))
            logged_new = select_from(rows_table, columns, "r").where(same_value(changed, columns, "r"))
        else:
            logged_new = new_images
        # Counted by the log inserts where the driver reports it, else before the transaction:
        # some warehouses run a transaction as one script.
        counted = adapter.capabilities.row_counts
        old_count, new_count = (
            (0, 0)
            if counted
            else (
                int(adapter.fetch(exp.select(exp.func("count", exp.Star())).from_(q.subquery("c")))[0][0])
                for q in (old_images, logged_new)
            )
        )
        with adapter.transaction():
            _clear_leftovers(adapter, log, ctx.batch)
            all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
            logged_old_rows = with_images(old_images, columns, ctx.batch, True)
            logged_new_rows = with_images(logged_new, columns, ctx.batch, False)
            written_old = adapter.execute(insert_into(log, all_columns, logged_old_rows))
            written_new = adapter.execute(insert_into(log, all_columns, logged_new_rows))
            if counted:
                old_count = _written(written_old, logged_old_rows, adapter)
                new_count = _written(written_new, logged_new_rows, adapter)
            kind = "delta" if old_count else "append"
            if merge:
                adapter.execute(build_key_merge(ctx.physical, rows_table, keys_table, key, columns))
            elif diff:
                adapter.execute(
                    exp.delete(ctx.physical.to_table(), where=same_value(changed, columns, ctx.physical.name))
                )
                adapter.execute(insert_into(ctx.physical, columns, logged_new))
            else:
                adapter.execute(exp.delete(ctx.physical.to_table(), where=target_match))
                adapter.execute(insert_into(ctx.physical, columns, new_images))
            _check_unique_key(adapter, ctx)
            cost = _run_cost(ctx, INCREMENTAL, _grown(ctx, old_count, new_count), None)
            _bookkeeping(adapter, ctx, kind, old_count + new_count, columns, cost)
    finally:
        _drop_scratch(adapter, [keys_table, rows_table, stored, changed])
    return Written(old_count + new_count, kind, columns, old_count + new_count)


# Pending input rows up to which a run replaces its keys without scratch tables (below).
SMALL_CHANGE_ROWS = 1_000


def _small(adapter: Adapter, changes: dict[TableRef, InputChange]) -> bool:
    """A change small enough that computing its affected keys again in each statement costs
    less than the statements that would keep them in scratch tables (~1 ms each on DuckDB,
    a round trip elsewhere): the fixed cost of a model in a long chain."""
    return (
        adapter.capabilities.row_counts
        and not any(change.full for change in changes.values())
        and sum(change.rows for change in changes.values()) <= SMALL_CHANGE_ROWS
    )


def _replace_small(adapter: Adapter, ctx: ModelContext, sources: ChangeSources) -> Written:
    """``execute_incremental`` for a small change: the affected keys in one scratch table,
    then one transaction of one log insert (old and new images), DELETE + INSERT of the
    affected keys (their row counts are the images' counts) and bookkeeping, the recomputed
    rows computed where they are written (twice, for the log and the table). Every row of an
    affected key is logged, old and new, as where the warehouse cannot diff: a few unchanged
    rows cost less than the three scratch tables that would find them. (A CTE of the keys in
    each statement instead of the table: DuckDB runs it as a correlated subquery, ten times
    slower.)"""
    keys = ctx.compiled.keys
    assert keys.key is not None and keys.inlined is not None
    affected = build_affected_keys(keys.inlined, keys.key, sources.is_changed, sources.changed, sources.everything)
    affected = rename_relations(affected, ctx.physical_of, ctx.default_schema)
    keys_table = _scratch(adapter, ctx.compiled.model.ref, "keys")
    execute_create(adapter, create_table_as(keys_table, affected, temporary=adapter.capabilities.temp_tables))
    keys_ref = keys_table.to_table(alias="k")
    recomputed = restrict_to_keys(ctx.compiled.physical_sql, keys.key, keys_ref)
    columns = _stored_columns(adapter, ctx)
    physical = ctx.physical.name
    match = key_match(keys_ref, [(n, exp.column(n, table=physical, quoted=True)) for n in keys.key])
    old_images = select_from(ctx.physical, columns, physical).where(match)
    log = change_log(ctx.compiled.model.ref)
    all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    try:
        with adapter.transaction():
            _clear_leftovers(adapter, log, ctx.batch)
            # one log insert of both images; the DELETE and INSERT that follow count them
            logged = exp.union(
                with_images(old_images, columns, ctx.batch, True),
                with_images(recomputed, columns, ctx.batch, False),
                distinct=False,
            )
            adapter.execute(insert_into(log, all_columns, logged))
            delete = exp.delete(ctx.physical.to_table(), where=match.copy())
            old_count = _written(adapter.execute(delete), delete, adapter)
            new_rows = exp.select(*columns_of(columns, "r")).from_(recomputed.subquery("r"))
            new_count = _written(adapter.execute(insert_into(ctx.physical, columns, new_rows)), new_rows, adapter)
            kind = "delta" if old_count else "append"
            _check_unique_key(adapter, ctx)
            cost = _run_cost(ctx, INCREMENTAL, _grown(ctx, old_count, new_count), None)
            _bookkeeping(adapter, ctx, kind, old_count + new_count, columns, cost)
    finally:
        _drop_scratch(adapter, [keys_table])
    return Written(old_count + new_count, kind, columns, old_count + new_count)


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
        .where(
            exp.and_(
                *[
                    exp.NullSafeEQ(
                        this=exp.column(c, table="v", quoted=True),
                        expression=exp.column(c, table=row_alias, quoted=True),
                    )
                    for c in columns
                ]
            )
        )
    )
