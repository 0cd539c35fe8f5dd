"""``merge keys``, ``delete+insert keys`` and ``recompute all``: the affected keys'
rows recomputed and written over the stored ones (one MERGE where the key is unique,
DELETE + INSERT otherwise), with a form without scratch tables for small changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from sqlorch.audits import hooks as audit_hooks
from sqlorch.execution.statements import (
    columns_of,
    create_table_as,
    insert_into,
    select_from,
    with_images,
)
from sqlorch.planning.chunks import chunk_budget, chunk_statements, numbered_keys
from sqlorch.planning.cost import INCREMENTAL
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.add_partial_aggregates import partial_aggregate_rows
from sqlorch.planning.rewrites.affected_keys import build_affected_keys
from sqlorch.planning.rewrites.merge_keys import build_key_merge, mark_present
from sqlorch.planning.rewrites.model_statements import (
    ChangeSources,
    ModelContext,
    audit_point,
    bookkeeping,
    check_unique_key,
    clear_leftovers,
    count_statement,
    creates,
    drop_scratch,
    partitioned_keys,
    planned,
    scratch,
    stored_columns,
)
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.restrict_to_keys import key_match, restrict_to_keys
from sqlorch.planning.steps import (
    NEW_ROWS,
    OLD_ROWS,
    InputChange,
    Item,
)
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
    change_log,
)


@dataclass(frozen=True)
class PreparedRows:
    """Affected keys and recomputed rows another strategy worked out (``signed_statements.py``):
    the statements that build its scratch tables (``before``), those that commit with the
    model (``during``), and its scratch tables."""

    affected: exp.Query | None
    recomputed: exp.Query
    before: list[Item]
    during: list[Item]
    scratch: list[TableRef]
    # the keys' and rows' scratch tables built in the model's transaction, which ``before``'s
    # last statements opened (what they read must not move before ``during`` uses it)
    in_transaction: bool = False
    # the columns ``affected`` holds and the rows are replaced by, where finer than the model's
    # key (a GROUP BY's columns, ``window_tails.py``: only the touched groups rewritten)
    key: list[str] | None = None
    # the DELETE of the keys' stored rows where the strategy's lookup found them already (by
    # DuckDB's rowid, ``statements.delete_found``; ``in_transaction`` then): the form no model
    # reads (``replaced_unlogged``) runs it instead of matching the keys over the whole table
    delete: exp.Delete | None = None


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
    key = prepared.key if prepared is not None and prepared.key else keys.key
    capabilities = ctx.capabilities
    temporary = capabilities.temp_tables
    keys_table, rows_table = scratch(ctx, "keys"), scratch(ctx, "rows")
    columns = stored_columns(ctx)
    log = change_log(model.ref)
    sources = ChangeSources(ctx, changes, resolve)
    out: list[Item] = []

    keys_ref = keys_table.to_table(alias="k")
    target_match: exp.Expr = exp.true()
    # a change over max_batch_rows: the statements after the keys, once per chunk of them (``chunks.py``)
    chunk = None
    if prepared is None and not fold_appends and key:
        chunk = _chunk_rows(ctx, changes)
    if prepared is not None:
        out += prepared.before
        recomputed = prepared.recomputed
        if key and prepared.affected is not None:
            made = create_table_as(keys_table, prepared.affected, temporary=temporary)
            out += creates(ctx, made, "affected keys", prepared.in_transaction)
    elif fold_appends:
        affected, recomputed = partial_aggregate_rows(ctx, sources)
        out += creates(ctx, create_table_as(keys_table, affected, temporary=temporary), "affected keys")
    elif key:
        affected = build_affected_keys(keys.inlined, key, sources.is_changed, sources.changed, sources.everything)
        affected = rename_relations(affected, ctx.physical_of, ctx.default_schema)
        if chunk is not None:
            affected = numbered_keys(affected)
        out += creates(ctx, create_table_as(keys_table, affected, temporary=temporary), "affected keys")
        recomputed = restrict_to_keys(ctx.compiled.physical_sql, key, keys_ref)
    else:
        recomputed = ctx.compiled.physical_sql
    per_chunk = len(out)  # the statements from here to the unique-key check run once per chunk
    if key:
        target_match = key_match(keys_ref, [(n, exp.column(n, table=ctx.physical.name, quoted=True)) for n in key])
    # no model reads the change log: the keys' rows replaced, neither diffed nor logged
    unread = replaced_unlogged(ctx, changes) and chunk is None
    merge = keys.unique and bool(key) and capabilities.merge_in_transaction and not unread
    rows_query = mark_present(recomputed) if merge else recomputed
    in_transaction = prepared is not None and prepared.in_transaction
    out += creates(ctx, create_table_as(rows_table, rows_query, temporary=temporary), "recomputed rows", in_transaction)
    if unread:
        delete = prepared.delete if prepared is not None else None
        out += _replace_unread(ctx, target_match, rows_table, columns, delete)
        out += prepared.during if prepared is not None else []
        out += check_unique_key(ctx)
        out += bookkeeping(ctx, columns, INCREMENTAL)
        return out + drop_scratch(ctx, [keys_table, rows_table, *(prepared.scratch if prepared else [])])
    stored, changed = scratch(ctx, "old"), scratch(ctx, "changed")
    diff = bool(key) and capabilities.except_all
    if ctx.audited:  # the recomputed rows of the affected keys, before anything is written
        rest = audit_hooks.stored_rest(ctx.physical, columns, target_match) if key else None
        out.append(audit_point(rows_table, columns, rest, "nothing was written", False))
    if key and chunk is None:  # the keys are distinct (a DISTINCT, or a GROUP BY of the key)
        old_images = stored_rows_of_keys(ctx, keys_table.to_table(alias="k"), key, columns)
    else:  # a chunk restricts the keys where they are read in FROM (``chunks.in_chunk``)
        old_images = select_from(ctx.physical, columns, ctx.physical.name).where(target_match)
    new_images = select_from(rows_table, columns)
    if diff:
        # Most rows of an affected key usually come back unchanged (one new event in a
        # user's window partition): write only the rows that really differ. The stored
        # rows of the affected keys are read once: finding them scans the whole table.
        out += creates(ctx, create_table_as(stored, old_images, temporary=temporary), "stored rows of the keys")
        differ = changed_values(stored, rows_table, columns)
        out += creates(ctx, create_table_as(changed, differ, temporary=temporary), "rows that differ")
        old_images = select_from(stored, columns, "o").where(same_value(changed, columns, "o"))
        logged_new = select_from(rows_table, columns, "r").where(same_value(changed, columns, "r"))
    else:
        logged_new = new_images
    # Counted by the log inserts where the driver reports it, else before the transaction:
    # some warehouses run a transaction as one script.
    counted = capabilities.row_counts
    if not counted:
        out.append(count_statement(old_images, OLD_ROWS, "count the old images"))
        out.append(count_statement(logged_new, NEW_ROWS, "count the new images"))
    out += clear_leftovers(ctx, log)
    all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    logged_old_rows = with_images(old_images, columns, ctx.batch, True)
    logged_new_rows = with_images(logged_new, columns, ctx.batch, False)
    out.append(
        planned(
            insert_into(log, all_columns, logged_old_rows), "change log: old images", True, OLD_ROWS if counted else ""
        )
    )
    out.append(
        planned(
            insert_into(log, all_columns, logged_new_rows), "change log: new images", True, NEW_ROWS if counted else ""
        )
    )
    if merge:
        out.append(
            planned(build_key_merge(ctx.physical, rows_table, keys_table, key, columns), "apply: merge keys", True)
        )
    elif diff:
        out.append(
            planned(
                exp.delete(ctx.physical.to_table(), where=same_value(changed, columns, ctx.physical.name)),
                "apply: delete changed rows",
                True,
            )
        )
        out.append(planned(insert_into(ctx.physical, columns, logged_new), "apply: insert changed rows", True))
    else:
        out.append(
            planned(exp.delete(ctx.physical.to_table(), where=target_match), "apply: delete the keys' rows", True)
        )
        out.append(planned(insert_into(ctx.physical, columns, new_images), "apply: insert recomputed rows", True))
    out += prepared.during if prepared is not None else []
    if chunk is not None:
        out[per_chunk:] = [chunk_statements(out[per_chunk:], keys_table, changes, chunk)]
    out += check_unique_key(ctx)
    out += bookkeeping(ctx, columns, INCREMENTAL)
    out += drop_scratch(ctx, [keys_table, rows_table, stored, changed, *(prepared.scratch if prepared else [])])
    return out


def replaced_unlogged(ctx: ModelContext, changes: dict[TableRef, InputChange]) -> bool:
    """Whether the keyed form replaces the keys' rows without the change log (``_replace_unread``):
    no model reads it, no audit reads the diff, the change is not chunked, and DELETE and
    INSERT commit together (without transactions a MERGE is the one atomic write: readers
    never see the keys' rows gone). Such a step replaces unique keys by DELETE + INSERT too,
    so it is planned as ``delete+insert keys``."""
    unchunked = _chunk_rows(ctx, changes) is None
    return not ctx.read and not ctx.audited and unchunked and ctx.capabilities.transactions


def _chunk_rows(ctx: ModelContext, changes: dict[TableRef, InputChange]) -> int | None:
    """The keys' rows per chunk where the change exceeds the budget (``chunks.chunk_budget``)."""
    capabilities = ctx.capabilities
    return chunk_budget(
        ctx.max_batch_rows,
        changes,
        capabilities.transactional_ddl and capabilities.transactions,
        capabilities.row_counts,
        ctx.audited,
    )


def _replace_unread(
    ctx: ModelContext, target_match: exp.Expr, rows_table: TableRef, columns: list[str], delete: exp.Delete | None
) -> list[Item]:
    """The affected keys' rows deleted and the recomputed ones inserted, for a model whose
    change log no model reads: no stored rows read for old images, no diff, no log writes
    (four statements and a scan of the table fewer than the logged form; a DELETE + INSERT
    rather than a MERGE, which DuckDB runs at about twice their cost). Counted by the
    DELETE and INSERT where the driver reports it, else before them."""
    new_images = select_from(rows_table, columns)
    counted = ctx.capabilities.row_counts
    out: list[Item] = []
    if not counted:
        old_images = select_from(ctx.physical, columns, ctx.physical.name).where(target_match.copy())
        out.append(count_statement(old_images, OLD_ROWS, "count the old images"))
        out.append(count_statement(new_images.copy(), NEW_ROWS, "count the new images"))
    if delete is None:
        delete = exp.delete(ctx.physical.to_table(), where=target_match)
    out.append(planned(delete, "apply: delete the keys' rows", True, OLD_ROWS if counted else ""))
    insert = insert_into(ctx.physical, columns, new_images)
    purpose = "apply: insert recomputed rows (no model reads the change log)"
    out.append(planned(insert, purpose, True, NEW_ROWS if counted else ""))
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
        and not partitioned_keys(keys, changes)  # its keys come from the touched partitions, not by substitution
    )


def small_statements(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> list[Item]:
    """``incremental_statements`` for a small change: the affected keys in one scratch table,
    then one transaction of one log insert (old and new images), DELETE + INSERT of the
    affected keys (their row counts are the images' counts) and bookkeeping, the recomputed
    rows computed where they are logged (the INSERT into the table copies them from the log,
    where the transaction reads its own writes; else it computes them again). Every row of an
    affected key is logged, old and new, as where the warehouse cannot diff: a few unchanged
    rows cost less than the three scratch tables that would find them. (A CTE of the keys in
    each statement instead of the table: DuckDB runs it as a correlated subquery, ten times
    slower.)

    A change log no model reads (``ModelContext.read``) is not written: the keys' rows are
    deleted and the recomputed ones inserted straight from the model's SQL, and the stored
    rows are not read for their old images (a scan of the table fewer)."""
    keys = ctx.compiled.keys
    assert keys.key is not None and keys.inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    affected = build_affected_keys(keys.inlined, keys.key, sources.is_changed, sources.changed, sources.everything)
    affected = rename_relations(affected, ctx.physical_of, ctx.default_schema, copy=False)
    keys_table = scratch(ctx, "keys")
    out: list[Item] = []
    # The keys in a scratch table, even where the inputs' change logs alone give them: inlined
    # in each statement instead, DuckDB's optimizer spent ~1 ms more on each of the three
    # statements than the table's own statement cost (a 1,000-model chain: +0.8 s).
    out += creates(ctx, create_table_as(keys_table, affected, temporary=ctx.capabilities.temp_tables), "affected keys")
    recomputed = restrict_to_keys(ctx.compiled.physical_sql, keys.key, keys_table.to_table(alias="k"))
    columns = stored_columns(ctx)
    on = null_safe_match("k", ctx.physical.name, keys.key, any_types=True)
    delete = exp.Delete(
        this=ctx.physical.to_table(), using=[keys_table.to_table(alias="k")], where=exp.Where(this=on.copy())
    )
    if not ctx.read:
        out.append(planned(delete, "apply: delete the keys' rows", True, OLD_ROWS))
        new_rows = exp.select(*columns_of(columns, "r")).from_(recomputed.subquery("r", copy=False), copy=False)
        insert = insert_into(ctx.physical, columns, new_rows, copy=False)
        out.append(planned(insert, "apply: insert recomputed rows (no model reads the change log)", True, NEW_ROWS))
        return [*out, *check_unique_key(ctx), *bookkeeping(ctx, columns, INCREMENTAL), *drop_scratch(ctx, [keys_table])]
    log = change_log(ctx.compiled.model.ref)
    all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    out += clear_leftovers(ctx, log)
    # one log insert of both images; the DELETE and INSERT that follow count them. Every
    # tree here is built for one statement: copied only where a second one uses it too
    old_images = stored_rows_of_keys(ctx, keys_table.to_table(alias="k"), keys.key, columns)
    logged = exp.union(
        with_images(old_images, columns, ctx.batch, True, copy=False),
        with_images(recomputed, columns, ctx.batch, not ctx.capabilities.read_own_writes),
        distinct=False,
        copy=False,
    )
    out.append(planned(insert_into(log, all_columns, logged, copy=False), "change log: old and new images", True))
    out.append(planned(delete, "apply: delete the keys' rows", True, OLD_ROWS))
    if ctx.capabilities.read_own_writes:  # the new images just logged: a scan of this batch, not a recompute
        is_new = exp.and_(
            exp.column(BATCH_COLUMN, table="c", quoted=True).eq(ctx.batch),
            exp.not_(exp.column(OLD_COLUMN, table="c", quoted=True)),
            copy=False,
        )
        new_rows = select_from(log, columns, "c").where(is_new, copy=False)
    else:
        new_rows = exp.select(*columns_of(columns, "r")).from_(recomputed.subquery("r", copy=False), copy=False)
    insert = insert_into(ctx.physical, columns, new_rows, copy=False)
    out.append(planned(insert, "apply: insert recomputed rows", True, NEW_ROWS))
    out += check_unique_key(ctx)
    out += bookkeeping(ctx, columns, INCREMENTAL)
    out += drop_scratch(ctx, [keys_table])
    return out


def stored_rows_of_keys(ctx: ModelContext, keys: exp.Expr, key: list[str], columns: list[str]) -> exp.Select:
    """The table's rows of the affected keys by a join, not a correlated ``EXISTS`` (DuckDB
    plans that at two to three times the cost on a table of millions of rows): the keys
    are distinct, so each stored row matches at most one of them, NULL-safe as DISTINCT and
    GROUP BY put NULLs together."""
    physical = ctx.physical.name
    on = null_safe_match("k", physical, key, any_types=True)
    return select_from(ctx.physical, columns, physical).join(keys, on=on, copy=False)


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
        .where(null_safe_match("v", row_alias, columns, any_types=True))
    )
