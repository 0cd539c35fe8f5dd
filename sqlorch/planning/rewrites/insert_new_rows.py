"""``insert new rows``: a row-preserving model over its one appended input: the model
evaluated over the appended rows, inserted."""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.audits import hooks as audit_hooks
from sqlorch.execution.statements import (
    count_rows,
    create_table_as,
    insert_into,
    select_from,
    with_images,
)
from sqlorch.planning.cost import INCREMENTAL
from sqlorch.planning.rewrites.model_statements import (
    ChangeSources,
    ModelContext,
    audit_point,
    bookkeeping,
    check_unique_key,
    clear_leftovers,
    creates,
    drop_scratch,
    let,
    planned,
    scratch,
    stored_columns,
)
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.substitute_occurrence import keep_only_branches_with, substitute_occurrence
from sqlorch.planning.steps import (
    KIND,
    NEW_ROWS,
    InputChange,
    Item,
    Statement,
)
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
    change_log,
)


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
    rows_table = scratch(ctx, "rows")
    columns = stored_columns(ctx)
    out: list[Item] = []
    out += creates(ctx, create_table_as(rows_table, appended, temporary=ctx.capabilities.temp_tables), "appended rows")
    if ctx.audited:  # the appended rows, before anything is written
        rest = audit_hooks.stored_rest(ctx.physical, columns, None)
        out.append(audit_point(rows_table, columns, rest, "nothing was written", False))
    new_rows = select_from(rows_table, columns)
    counted = ctx.capabilities.row_counts
    if not counted:
        out.append(Statement(count_rows(rows_table), "count the appended rows", "count", binds=NEW_ROWS))
    log_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
    out += clear_leftovers(ctx, change_log(model.ref))
    out.append(
        planned(
            insert_into(change_log(model.ref), log_columns, with_images(new_rows, columns, ctx.batch, False)),
            "change log: new rows",
            True,
        )
    )
    out.append(planned(insert_into(ctx.physical, columns, new_rows), "append", True, NEW_ROWS if counted else ""))
    out += check_unique_key(ctx)
    out.append(let(KIND, "append"))
    out += bookkeeping(ctx, columns, INCREMENTAL, appends=True)
    out += drop_scratch(ctx, [rows_table])
    return out
