"""A full rebuild: the model's table replaced by its query, the change log diffed from the
old and new rows where the warehouse can (so consumers stay incremental), else started
over (consumers rebuild)."""

from __future__ import annotations

from sqlglot import exp

from sqlorch.audits import hooks as audit_hooks
from sqlorch.execution.statements import (
    columns_of,
    count_rows,
    create_change_log,
    create_table_as,
    drop_table,
    insert_into,
    select_from,
    with_images,
)
from sqlorch.planning.cost import FULL
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.model_statements import (
    ModelContext,
    audit_point,
    bookkeeping,
    check_unique_key,
    clear_leftovers,
    creates,
    drop_scratch,
    let,
    planned,
)
from sqlorch.planning.steps import (
    KIND,
    ROWS,
    WRITTEN,
    Branch,
    Choice,
    Item,
    Rule,
    Statement,
)
from sqlorch.refs import TableRef
from sqlorch.state.store import (
    BATCH_COLUMN,
    OLD_COLUMN,
    change_log,
    work_table,
)


def _multiset_minus(left: TableRef, right: TableRef, columns: list[str]) -> exp.Query:
    return exp.except_(select_from(left, columns), select_from(right, columns), distinct=False)


def _whole_keys(
    ctx: ModelContext, old: TableRef, touched: TableRef, gone: exp.Query, came: exp.Query, columns: list[str]
) -> tuple[list[Item], exp.Query, exp.Query]:
    """A model keyed by its one table's identity, whose key may hold several rows (a
    source's repeated key), logs every row of each key whose rows changed, old and new
    (``KeyAnalysis.whole_key_log``: a consumer keyed by the same identity maps whole keys):
    the keys of the rows that differ, then the old and new rows of those keys."""
    key = ctx.compiled.keys.key or []
    differ = exp.union(gone, came, distinct=False)
    keys = exp.select(*columns_of(key, "d")).distinct().from_(differ.subquery("d"))
    statements: list[Item] = [
        *creates(
            ctx, create_table_as(touched, keys, temporary=ctx.capabilities.temp_tables), "keys whose rows changed", True
        )
    ]

    def of_touched(table: TableRef) -> exp.Select:
        match = exp.Exists(this=select_from(touched, key, "k").where(null_safe_match("k", "t", key, any_types=True)))
        return select_from(table, columns).where(match)

    return statements, of_touched(old), of_touched(ctx.physical)


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
        out += creates(ctx, create_table_as(scratch, sql), "the new rows, to audit before publishing")
        out.append(audit_point(scratch, columns, None, "the scratch table was not published", False))
        if not view:
            sql = select_from(scratch, columns)
    # ---
    if diff and previous is not None:
        out += creates(ctx, create_table_as(old, select_from(ctx.physical, list(previous))), "keep the old rows", True)
    out += creates(ctx, create_table_as(ctx.physical, sql, view=view), "rebuild", True)
    if audit_here:
        out.append(audit_point(ctx.physical, columns, None, "the transaction was rolled back", True))
    if view:
        out.append(let(WRITTEN, 0))
    else:
        out.append(Statement(count_rows(ctx.physical), "count the rows written", "count", True, WRITTEN))
        out += check_unique_key(ctx)
    if diff and previous is not None:
        all_columns = [*columns, BATCH_COLUMN, OLD_COLUMN]
        gone: exp.Query = _multiset_minus(old, ctx.physical, columns)
        came: exp.Query = _multiset_minus(ctx.physical, old, columns)
        keyed: list[Item] = []
        # keyed by an identity a key may repeat under: every row of a touched key logged
        touched = work_table(model.ref, "touched", temporary=ctx.capabilities.temp_tables)
        whole_keys = ctx.compiled.keys.whole_key_log and not ctx.compiled.keys.unique
        if whole_keys:
            keyed, gone, came = _whole_keys(ctx, old, touched, gone, came, columns)
        delta: list[Item] = [
            *clear_leftovers(ctx, log),
            *keyed,
            planned(
                insert_into(log, all_columns, with_images(gone, columns, ctx.batch, True)),
                "change log: old rows gone",
                True,
            ),
            planned(
                insert_into(log, all_columns, with_images(came, columns, ctx.batch, False)),
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
            let(KIND, "delta"),
        ]
        whole: list[Item] = [
            *creates(ctx, create_change_log(log, ctx.physical, columns), "new change log", True),
            let(KIND, "full"),
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
        out.append(planned(drop_table(old), "drop the old rows", True))
        if whole_keys:
            out += drop_scratch(ctx, [touched])
    else:
        if model.config.materialized == "incremental":
            out += creates(ctx, create_change_log(log, ctx.physical, columns), "new change log", True)
        out.append(let(KIND, "full"))
    if not view:
        # imported here: the signed strategy's module builds on this package
        from sqlorch.planning.rewrites.kept_aggregates import rebuilt_kept_statements
        from sqlorch.planning.rewrites.signed_statements import rebuilt_state_statements
        from sqlorch.planning.rewrites.window_tails import rebuilt_tail_statements

        out += rebuilt_state_statements(ctx)
        out += rebuilt_kept_statements(ctx)
        out += rebuilt_tail_statements(ctx)
    out += bookkeeping(ctx, columns, FULL)
    if scratch is not None:
        out.append(Statement(drop_table(scratch), "drop the audited scratch table", always=True))
    return out
