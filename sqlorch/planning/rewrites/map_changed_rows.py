"""``map changed rows``: a row-level model whose one changed input is updated or deleted from
changes exactly as the model evaluated over that input's change log: each old image of the
input maps to the model's old images, each new image to its new ones (the other inputs did
not change, so the model is linear in the changed one: DBSP's rule for projections,
filters and joins). The model's change is read from the input's change log alone: neither
the input's table nor the model's is scanned to find the affected keys, so a one-row
change costs one row whatever the tables' sizes, in three statements where replacing the
affected keys takes four and a scratch table.

Two cases, both exact:

- The key is the identity of the changed table, the model's FROM table (joined, maybe, to
  tables that did not change), and that table's change log holds every row of each key it
  touches (``KeyAnalysis.identity_table``: a source's ``unique_key``, whose capture logs all
  of a changed key's rows, a repeated key's too; an upstream model with a unique key, or
  itself of one table keyed by its identity, ``whole_key_log``). A key's
  rows in the model are then the model over the table's rows of that key: its stored rows
  are the model over the key's old images (of the first batch in the range that touched
  it), its new rows the model over its new images (of the last). The stored rows of the
  old images' keys are deleted and the new images inserted, all of them, so the model's own
  log holds every row of each key it touches as well, and so does its rebuild's diff
  (``rebuild._whole_keys``): a chain of such models maps link by link. Not an upstream
  model joined to others: the diffed keyed form it takes when a joined table changes logs
  only the rows of a key that differ.
- The key is unique (declared, checked after every build): the mapped images are
  consolidated in one grouped pass (GROUP BY every column, the sum of the signs, as
  ``replace_keys.changed_values`` diffs): batches read at once cancel out, and so does a
  row whose mapped values did not move; per key one old image is left, the stored row, and
  one new one.

The new images are copied into the table from the change log just written (the transaction
reads its own writes); the DELETE's and the INSERT's row counts are the images' counts.

Where it applies (``strategies.map_changes``): the model keeps rows one for one (no
aggregate, window, DISTINCT or subquery expression), one input changed, read once and not
on the nullable side of an outer join; the target has transactions (the log and the table
move together), row counts and grouping of whole rows (EXCEPT ALL stands for that: DuckDB
and Postgres).
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

EDGES = {"min": "_sqlorch_first", "max": "_sqlorch_last"}  # a key's first and last batch in the range read


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


def _whole_key_images(log: TableRef, names: list[str], identity: list[str], change: InputChange) -> exp.Select:
    """The images of a change log's range, flagged old or new, where the log holds every row
    of each key it touches: of each key, the old images of the first batch that touched it
    (its rows before the range) and the new images of the last (its rows after)."""
    entries = select_from(log, [*names, OLD_COLUMN], "c").where(batch_range(change.after, change.upto, "c"))
    if change.upto - change.after == 1:  # one batch: its images
        return entries
    # several batches: a key's rows between its first batch and its last cancel
    flag = exp.column(OLD_COLUMN, table="c", quoted=True)
    batch = exp.column(BATCH_COLUMN, table="c", quoted=True)
    at: dict[str, exp.Expr] = {}
    for function, name in EDGES.items():
        edge = exp.Window(this=exp.func(function, batch.copy()), partition_by=columns_of(identity, "c"))
        entries = entries.select(edge.as_(name, quoted=True), copy=False)
        at[function] = batch.copy().eq(exp.column(name, table="c", quoted=True))
    entries = entries.select(batch.copy(), copy=False)
    old_edge, new_edge = exp.and_(flag.copy(), at["min"]), exp.and_(exp.not_(flag.copy()), at["max"])
    return (
        exp.select(*columns_of(names, "c"), flag.copy())
        .from_(entries.subquery("c", copy=False), copy=False)
        .where(exp.or_(old_edge, new_edge))
    )


def mapped_changes(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
) -> exp.Select:
    """The model's change: its columns, the batch, and whether each row is an old image.

    Where the key is unique (declared, checked every build) the mapped images are
    consolidated. Where it is the changed table's identity (a key may hold several rows: a
    join, or a source's repeated key) they are not: a key's old images are all its stored
    rows, its new images all its new rows, so that its stored rows are deleted and the new
    ones inserted whole, and the model's own log holds every row of each key it touches. Such
    a model is a SELECT (``analysis/keys._identity_table``): the old-image flag is carried
    through it, one scan of the change log where the old and new images mapped apart take
    two and a UNION (twice DuckDB's time on a one-row change)."""
    keys = ctx.compiled.keys
    inlined = keys.inlined
    assert inlined is not None
    sources = ChangeSources(ctx, changes, resolve)
    columns = stored_columns(ctx)

    def mapped(rows: Callable[[exp.Table], exp.Query]) -> tuple[exp.Query, exp.Subquery]:
        query, target = substitute_occurrence(inlined, 0, sources.is_changed, rows, sources.everything)
        return rename_relations(keep_only_branches_with(query, target), ctx.physical_of, ctx.default_schema), target

    if keys.unique:

        def images(old: bool) -> exp.Select:
            flag = exp.column(OLD_COLUMN, table="c", quoted=True)
            query, _ = mapped(lambda table: sources.changed(table).where(flag if old else exp.not_(flag)))
            return _signed(query, columns, -1 if old else 1)

        return consolidated(exp.union(images(True), images(False), distinct=False), columns, ctx.batch)

    def whole_keys(table: exp.Table) -> exp.Query:
        ref = resolve(table)
        assert ref is not None
        names = ctx.input_columns[ref]
        identity = [name for name in names if name.lower() in keys.identity]
        return _whole_key_images(change_log(ref), names, identity, changes[ref])

    query, target = mapped(whole_keys)
    assert isinstance(query, exp.Select)
    flag = exp.Column(this=exp.to_identifier(OLD_COLUMN, quoted=True), table=target.args["alias"].this.copy())
    query = query.select(flag, copy=False)
    stamp = exp.alias_(exp.Literal.number(ctx.batch), BATCH_COLUMN, quoted=True)
    flagged = exp.column(OLD_COLUMN, table="m", quoted=True)
    return exp.select(*columns_of(columns, "m"), stamp, flagged).from_(query.subquery("m", copy=False), copy=False)


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
    rows_table = scratch(ctx, "rows")  # the mapped new rows, where they are audited
    new_rows = _images(rows, columns, False, batch)
    old_keys = _images(rows, key, True, batch)
    if ctx.audited:  # the new rows, before anything is written
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
    return out + (drop_scratch(ctx, [rows_table]) if ctx.audited else [])
