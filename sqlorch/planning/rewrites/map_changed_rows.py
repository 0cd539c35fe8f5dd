"""``map changed rows``: a row-level model whose one changed input is updated or deleted from
changes exactly as the model evaluated over that input's change log: each old image of the
input maps to the model's old images, each new image to its new ones (the other inputs did
not change, so the model is linear in the changed one: DBSP's rule for projections,
filters and joins). The model's change is read from the input's change log alone: neither
the input's table nor the model's is scanned to find the affected keys, so a one-row
change costs one row whatever the tables' sizes, in three statements where replacing the
affected keys takes four and a scratch table.

The images are consolidated in one grouped pass (GROUP BY every column, the sum of the
signs, as ``replace_keys.changed_values`` diffs), so that several batches of the input read
at once cancel out (a row changed and changed back). Where a key holds one row (a unique
key; the identity of the one table the model reads) the mapped images are consolidated: a
row whose mapped values did not move (an input column the model does not read changed) is
not logged either; per key at most one old image is left, the stored row, and one new one.
Where a join gives a key several rows (the model keyed by its FROM table's identity,
joined to unchanged tables), the input's images are consolidated before they are mapped:
each key's old images are then exactly its stored rows, its new images all its new rows.
The stored rows of the old images' keys are deleted and the new images inserted, copied
from the change log just written (the transaction reads its own writes); their row counts
are the images' counts.

Where it applies (``strategies.map_changes``): the model keeps rows one for one (no
aggregate, window, DISTINCT or subquery expression), one input changed, read once and not
on the nullable side of an outer join; its key is unique, or is the identity of the table
that changed, its FROM table (a source's ``unique_key``, unique wherever it changes: the
capture recaptures a source whole where a changed key repeats; an upstream model's unique
or mapped key); the target has transactions (the log and the table move together), row
counts and grouping of whole rows (EXCEPT ALL stands for that: DuckDB and Postgres).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.audits import hooks as audit_hooks
from sqlorch.execution.statements import (
    batch_range,
    columns_of,
    create_table_as,
    insert_into,
    select_from,
    with_images,
)
from sqlorch.planning.cost import INCREMENTAL
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.model_statements import (
    ChangeSources,
    ModelContext,
    audit_point,
    bookkeeping,
    check_unique_key,
    clear_leftovers,
    creates,
    drop_scratch,
    planned,
    scratch,
    stored_columns,
)
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.replace_keys import SIGN_COLUMN
from sqlorch.planning.rewrites.substitute_occurrence import keep_only_branches_with, substitute_occurrence
from sqlorch.planning.steps import NEW_ROWS, OLD_ROWS, InputChange, Item
from sqlorch.refs import TableRef
from sqlorch.state.store import BATCH_COLUMN, OLD_COLUMN, change_log


def consolidated(signed: exp.Query, columns: list[str], batch: int | None) -> exp.Select:
    """The rows of ``signed`` (``columns`` and a sign) whose signs do not sum to zero, each
    flagged old where its sum is negative (with ``batch``: the change-log columns)."""
    total = exp.func("sum", exp.column(SIGN_COLUMN, quoted=True))
    stamp = [] if batch is None else [exp.alias_(exp.Literal.number(batch), BATCH_COLUMN, quoted=True)]
    return (
        exp.select(*columns_of(columns, "d"), *stamp, exp.alias_(total.copy() < 0, OLD_COLUMN, quoted=True))
        .from_(signed.subquery("d", copy=False), copy=False)
        .group_by(*columns_of(columns, "d"), copy=False)
        .having(total.neq(0), copy=False)
    )


def _signed(query: exp.Query, columns: list[str], sign: int | exp.Expr) -> exp.Select:
    value = exp.Literal.number(sign) if isinstance(sign, int) else sign
    return exp.select(*columns_of(columns, "m"), value.as_(SIGN_COLUMN, quoted=True)).from_(
        query.subquery("m", copy=False), copy=False
    )


def mapped_changes(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> exp.Query:
    """The model's change: its columns, the batch, and whether each row is an old image.

    Where a key holds one row (``unique`` or ``maps_identity``) the mapped images are
    consolidated; where a join gives a key several rows (keyed by its FROM table's
    identity) the input's images are consolidated before they are mapped, so that each key's
    old images are exactly its stored rows and its new images all its new rows."""
    keys = ctx.compiled.keys
    inlined = keys.inlined
    assert inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    columns = stored_columns(ctx)
    per_row = keys.unique or keys.maps_identity
    flag = exp.column(OLD_COLUMN, table="c", quoted=True)

    def images(old: bool) -> exp.Query:
        def rows(table: exp.Table) -> exp.Query:
            if per_row:
                logged = sources.changed(table)
            else:  # the input's net change: per key its row before and its row after
                ref = resolve(table)
                assert ref is not None
                names, change = ctx.input_columns[ref], changes[ref]
                entries = select_from(change_log(ref), [*names, OLD_COLUMN], "c")
                entries = entries.where(batch_range(change.after, change.upto, "c"), copy=False)
                old_entry = exp.column(OLD_COLUMN, table="m", quoted=True)
                sign = exp.case().when(old_entry, exp.Literal.number(-1)).else_(exp.Literal.number(1))
                net = consolidated(_signed(entries, names, sign), names, None)
                logged = exp.select(*columns_of(names, "c")).from_(net.subquery("c", copy=False), copy=False)
            return logged.where(flag.copy() if old else exp.not_(flag.copy()), copy=False)

        mapped, target = substitute_occurrence(inlined, 0, sources.is_changed, rows, sources.everything)
        mapped = keep_only_branches_with(mapped, target)
        return rename_relations(mapped, ctx.physical_of, ctx.default_schema, copy=False)

    if per_row:
        both = exp.union(_signed(images(True), columns, -1), _signed(images(False), columns, 1), distinct=False)
        return consolidated(both, columns, ctx.batch)
    return exp.union(
        with_images(images(True), columns, ctx.batch, True, copy=False),
        with_images(images(False), columns, ctx.batch, False, copy=False),
        distinct=False,
        copy=False,
    )


def _images(rows: TableRef | exp.Query, columns: list[str], old: bool, batch: int | None) -> exp.Select:
    """The old (or new) images among ``rows``: the change log's of ``batch``, or the mapped change's."""
    flag = exp.column(OLD_COLUMN, table="c", quoted=True)
    where: exp.Expr = flag if old else exp.not_(flag)
    if batch is not None:
        where = exp.and_(exp.column(BATCH_COLUMN, table="c", quoted=True).eq(batch), where)
    source = rows.subquery("c") if isinstance(rows, exp.Query) else rows.to_table(alias="c")
    return exp.select(*columns_of(columns, "c")).from_(source).where(where)


def map_statements(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> list[Item]:
    """Log the mapped change, delete the old images' keys, insert the new images. Where no
    model reads the change log (``ModelContext.read``) it is not written: the two apply
    statements each evaluate the mapped change (a read of the input's change log)."""
    keys = ctx.compiled.keys
    assert keys.key is not None
    key = keys.key
    columns = stored_columns(ctx)
    change = mapped_changes(ctx, changes, resolve)
    log = change_log(ctx.compiled.model.ref)
    # what the apply statements read the change from: the log of this batch, or the mapped change
    rows: TableRef | exp.Query = log if ctx.read else change
    batch = ctx.batch if ctx.read else None
    out: list[Item] = []
    new_rows = _images(rows, columns, False, batch)
    old_keys = _images(rows, key, True, batch)
    if ctx.audited:  # the new rows, before anything is written
        rows_table = scratch(ctx, "rows")
        temporary = ctx.capabilities.temp_tables
        new_images = create_table_as(rows_table, _images(change, columns, False, None), temporary=temporary)
        out += creates(ctx, new_images, "mapped new rows")
        gone = exp.Exists(this=_images(change, key, True, None).where(null_safe_match("c", ctx.physical.name, key)))
        rest = audit_hooks.stored_rest(ctx.physical, columns, gone)
        out.append(audit_point(rows_table, columns, rest, "nothing was written", False))
        new_rows = select_from(rows_table, columns, "c")
    if ctx.read:
        out += clear_leftovers(ctx, log)
        all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
        out.append(planned(insert_into(log, all_columns, change, copy=False), "change log: the mapped images", True))
    on = null_safe_match("k", ctx.physical.name, key, any_types=True)
    delete = exp.Delete(this=ctx.physical.to_table(), using=[old_keys.subquery("k")], where=exp.Where(this=on))
    out.append(planned(delete, "apply: delete the old images' keys", True, OLD_ROWS))
    out.append(planned(insert_into(ctx.physical, columns, new_rows), "apply: insert the new images", True, NEW_ROWS))
    out += check_unique_key(ctx)
    out += bookkeeping(ctx, columns, INCREMENTAL)
    return out + (drop_scratch(ctx, [scratch(ctx, "rows")]) if ctx.audited else [])
