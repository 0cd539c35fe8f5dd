"""``map changed rows``: a row-level model whose one changed input is updated or deleted from
changes exactly as the model evaluated over that input's change log: each old image of the
input maps to the model's old images, each new image to its new ones (the other inputs did
not change, so the model is linear in the changed one: DBSP's rule for projections,
filters and joins). The model's change is read from the input's change log alone: neither
the input's table nor the model's is scanned to find the affected keys, so a one-row
change costs one row whatever the tables' sizes, in three statements where replacing the
affected keys takes four and a scratch table.

The mapped images are consolidated, one grouped pass over both (GROUP BY every column, the
sum of the signs, as ``replace_keys.changed_values`` diffs): several batches of the input
read at once cancel out (a row changed and changed back), and a row whose mapped values
did not move (an input column the model does not read changed) is not logged. What is
left is the model's change: per key at most one old image, the stored row (the key is
unique), and one new one. The stored rows of the old images' keys are deleted and the new
images inserted, copied from the change log just written (the transaction reads its own
writes); their row counts are the images' counts.

Where it applies (``strategies.map_changes``): the model keeps rows one for one (no
aggregate, window, DISTINCT or subquery expression), its key is unique, one input changed,
read once and not on the nullable side of an outer join, and the target has transactions
(the log and the table move together), row counts and grouping of whole rows (EXCEPT ALL
stands for that: DuckDB and Postgres).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.audits import hooks as audit_hooks
from sqlorch.execution.statements import columns_of, create_table_as, insert_into, select_from
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


def mapped_changes(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> exp.Select:
    """The model's consolidated change: its columns, the batch, and whether each row is an
    old image (its sign summed below zero)."""
    inlined = ctx.compiled.keys.inlined
    assert inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    columns = stored_columns(ctx)

    def images(old: bool, sign: int) -> exp.Select:
        def rows(table: exp.Table) -> exp.Query:
            logged = sources.changed(table)
            flag = exp.column(OLD_COLUMN, table="c", quoted=True)
            return logged.where(flag if old else exp.not_(flag), copy=False)

        mapped, target = substitute_occurrence(inlined, 0, sources.is_changed, rows, sources.everything)
        mapped = keep_only_branches_with(mapped, target)
        mapped = rename_relations(mapped, ctx.physical_of, ctx.default_schema, copy=False)
        signed = exp.Literal.number(sign).as_(SIGN_COLUMN, quoted=True)
        return exp.select(*columns_of(columns, "m"), signed).from_(mapped.subquery("m", copy=False), copy=False)

    both = exp.union(images(True, -1), images(False, 1), distinct=False, copy=False)
    total = exp.func("sum", exp.column(SIGN_COLUMN, quoted=True))
    return (
        exp.select(
            *columns_of(columns, "d"),
            exp.alias_(exp.Literal.number(ctx.batch), BATCH_COLUMN, quoted=True),
            exp.alias_(total.copy() < 0, OLD_COLUMN, quoted=True),
        )
        .from_(both.subquery("d", copy=False), copy=False)
        .group_by(*columns_of(columns, "d"), copy=False)
        .having(total.neq(0), copy=False)
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
        out += creates(ctx, create_table_as(rows_table, _images(change, columns, False, None)), "mapped new rows")
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
