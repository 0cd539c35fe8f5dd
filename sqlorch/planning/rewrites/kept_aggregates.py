"""``recompute from kept groups``: a model whose changed inputs are read only inside
aggregated derived tables (``analysis/kept_aggregates.py``) keeps those tables' groups in
``_sqlorch.agg<i>__<model>``, folds the change into them by signed deltas (the fold of
``signed_aggregates.py``: per touched group, stored state plus weighted delta; MIN/MAX
recomputed where the extreme left; groups reaching zero rows deleted), and recomputes the
model with each such table read from its finalised groups (HAVING applied there). The
recomputed rows replace the stored ones where they differ, as ``merge keys`` does.

Exact because a kept table's finalised groups are the table's rows (``build_finalise`` is
the fold's own output step) and every other table of the model is read as it is now.
The kept groups follow the crash-safety rules of the fold's group state
(``signed_statements.py``): folded in the model's transaction, their batch recorded there
(``store.kept_states_record``); a state not of the model's last batch (first run, after
``--full-refresh``, another strategy, a crash) is rebuilt from the inputs; a rebuild of the
model writes them too (``rebuilt_kept_statements``), so the next change folds into them.
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.analysis.kept_aggregates import KeptAggregate
from sqlorch.analysis.signed_shape import aggregates_of
from sqlorch.execution.statements import columns_of, select_from
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.rewrites.model_statements import ModelContext, Resolve, stored_columns, table_created
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.replace_keys import PreparedRows, incremental_statements
from sqlorch.planning.rewrites.signed_aggregates import (
    ROWS,
    build_delta,
    build_finalise,
    build_state_query,
    matches,
    state_parts,
)
from sqlorch.planning.rewrites.signed_statements import (
    average_type,
    fold_into_state,
    signed_sources,
    state_batch_statements,
    state_is_current,
)
from sqlorch.planning.steps import InputChange, Item
from sqlorch.refs import TableRef
from sqlorch.state.store import kept_state, kept_states_record, work_table


def kept_tables(compiled: CompiledModel) -> list[TableRef]:
    """The group-state tables the model keeps, one per kept derived table (what ``plan`` shows)."""
    return [kept_state(compiled.model.ref, index) for index in range(len(compiled.keys.kept))]


def _names(kept: KeptAggregate) -> list[str]:
    return [*kept.key, ROWS, *(name for name, _ in state_parts(aggregates_of(kept.query)))]


def _physical(ctx: ModelContext, query: exp.Query) -> exp.Query:
    return rename_relations(query, ctx.physical_of, ctx.default_schema)


def rebuilt_kept_statements(ctx: ModelContext) -> list[Item]:
    """A rebuilt model's kept groups, written in the rebuild's transaction: the next change
    folds into them instead of building them from the inputs, as dear as the rebuild."""
    compiled = ctx.compiled
    if (
        not compiled.keys.kept
        or not ctx.capabilities.transactions
        or compiled.model.config.materialized != "incremental"
    ):
        return []
    out: list[Item] = []
    for table, kept in zip(kept_tables(compiled), compiled.keys.kept, strict=True):
        query = _physical(ctx, build_state_query(kept.query, list(kept.key)))
        out += table_created(ctx, table, query, "kept groups from the inputs", scratch=False, transaction=True)
    return out + state_batch_statements(kept_states_record(compiled.model.ref), ctx.batch)


def _with_groups(
    top: exp.Query, kept: list[KeptAggregate], groups: list[exp.Query], avg_type: str = "DOUBLE"
) -> exp.Query:
    """``top`` with each kept derived table read from its groups (finalised: the table's rows;
    an AVG in ``avg_type``, ``signed_statements.average_type``)."""
    copy = top.copy()
    for node in list(copy.find_all(exp.Subquery)):
        if not isinstance(node.parent, (exp.From, exp.Join)):
            continue
        for item, rows in zip(kept, groups, strict=True):
            if node.this == item.query:
                finalised = build_finalise(item.query, list(item.key), exp.to_table("g"), avg_type)
                finalised.set("from_", exp.From(this=rows.copy().subquery("g")))
                node.set("this", finalised)
                break
    return copy


def kept_statements(ctx: ModelContext, changes: dict[TableRef, InputChange], resolve: Resolve) -> list[Item]:
    """The step's statements: each kept table's groups folded (or rebuilt where not current),
    the model recomputed from them into a scratch table, and its rows replaced where they
    differ (``replace_keys.incremental_statements``: every key of the table or the new rows)."""
    compiled = ctx.compiled
    keys = compiled.keys
    assert keys.key is not None and keys.inlined is not None and keys.kept
    ref = compiled.model.ref
    temporary = ctx.capabilities.temp_tables
    is_changed, delta_rows, old_rows = signed_sources(ctx, changes, resolve)
    current = state_is_current(ctx.kept_state, ctx.batch)

    def create(table: TableRef, query: exp.Query, purpose: str, scratch: bool = True) -> list[Item]:
        return table_created(ctx, table, query, purpose, scratch)

    before: list[Item] = []
    during: list[Item] = []
    scratch: list[TableRef] = []
    groups: list[exp.Query] = []  # per kept table, its groups after the change
    for index, (state, kept) in enumerate(zip(kept_tables(compiled), keys.kept, strict=True)):
        top, key, names = kept.query, list(kept.key), _names(kept)
        if not current:  # from the inputs as they are now: already after the change
            before += create(state, _physical(ctx, build_state_query(top, key)), "kept groups from the inputs", False)
            groups.append(select_from(state, names, "s"))
            continue
        if not any(is_changed(table) for table in top.find_all(exp.Table)):
            groups.append(select_from(state, names, "s"))
            continue
        delta, recompute, after = (work_table(ref, f"k{part}{index}", temporary) for part in ("delta", "again", "next"))
        query = _physical(ctx, build_delta(top, key, is_changed, delta_rows, old_rows))
        before += create(delta, query, "kept groups: signed delta per group")
        fold = fold_into_state(
            top,
            key,
            (state, delta, recompute, after),
            _physical(ctx, build_state_query(top, key)),
            create,
            "kept groups",
        )
        before += fold.before
        during += fold.during
        scratch += [delta, after, *([recompute] if fold.recomputed else [])]
        untouched = select_from(state, names, "s").where(matches(delta.to_table(alias="k"), key, "s").not_())
        groups.append(exp.union(untouched, fold.held.copy(), distinct=False))
    during += state_batch_statements(kept_states_record(ref), ctx.batch)
    rows = work_table(ref, "fromkept", temporary)
    before += create(
        rows,
        _physical(ctx, _with_groups(keys.inlined, keys.kept, groups, average_type(ctx.dialect))),
        "the model from its groups",
    )
    scratch.append(rows)
    columns = stored_columns(ctx)
    affected = None
    if keys.key:  # every key of the stored rows or the recomputed ones
        affected = exp.union(
            exp.select(*columns_of(keys.key, "t")).from_(ctx.physical.to_table(alias="t")),
            exp.select(*columns_of(keys.key, "r")).from_(rows.to_table(alias="r")),
            distinct=True,
        )
    prepared = PreparedRows(affected, select_from(rows, columns, "r"), before, during, scratch)
    return incremental_statements(ctx, changes, resolve, prepared=prepared)
