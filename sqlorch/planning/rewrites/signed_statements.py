"""Running a model maintained from signed deltas (``planning/rewrites/signed_aggregates.py``).

The groups' state lives in ``_sqlorch.agg__<model>``; ``_sqlorch.aggregate_states`` records
the model batch it is up to date with. It is written in the model's transaction, so a state
that does not match the model's last batch (a full rebuild or another strategy ran since, or
a run died before committing) is rebuilt from the inputs at the next run, never trusted.
The values of its DISTINCT aggregates (``_sqlorch.dst<i>__<model>``, ``signed_distinct.py``)
share that record: written with the group state, rebuilt with it.
Here the statements are assembled, at plan time; ``models.incremental_statements`` adds the
model's own MERGE, change log and bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from sqlorch.analysis.signed_shape import aggregates_of
from sqlorch.execution.statements import (
    batch_range,
    columns_of,
    delete_found,
    insert_into,
    select_from,
)
from sqlorch.planning.compiler import CompiledModel
from sqlorch.planning.rewrites.model_statements import ModelContext, partitioned_form, table_created
from sqlorch.planning.rewrites.model_statements import scratch as scratch_table
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.replace_keys import PreparedRows, incremental_statements, replaced_unlogged
from sqlorch.planning.rewrites.restrict_to_keys import restrict_to_keys
from sqlorch.planning.rewrites.signed_aggregates import (
    ROWS,
    WEIGHT,
    build_delta,
    build_delta_from_rows,
    build_finalise,
    build_next_state,
    build_recompute_keys,
    build_signed_rows,
    build_state_query,
    matches,
    state_parts,
)
from sqlorch.planning.rewrites.signed_distinct import (
    build_distinct_change,
    build_values_next_from_rows,
    build_values_query,
    value_columns,
    value_keys_match,
    value_sets,
)
from sqlorch.planning.rewrites.signed_partition import (
    Before,
    build_partition_delta,
    build_partition_keys,
    build_touched,
    changed_anchors,
    in_touched,
    own_filter,
    read_columns,
    rows_before,
    rows_in_touched,
)
from sqlorch.planning.steps import InputChange, Item, Statement
from sqlorch.refs import TableRef
from sqlorch.state.store import OLD_COLUMN, aggregate_state, change_log, distinct_state, state_table, work_table

STATES = state_table("aggregate_states")


def _weight(old: exp.Expr, new: exp.Expr) -> exp.Expr:
    image = exp.column(OLD_COLUMN, table="c", quoted=True)
    return exp.alias_(exp.Case(ifs=[exp.If(this=image, true=old)]).else_(new), WEIGHT, quoted=True)


def signed_sources(
    ctx: ModelContext, changes: dict[TableRef, InputChange], resolve: Callable[[exp.Table], TableRef | None]
) -> tuple[Callable[[exp.Table], bool], Callable[[exp.Table], exp.Select], Callable[[exp.Table], exp.Query]]:
    """is_changed, the signed change of a table, and its rows before the change."""
    minus, plus = exp.Literal.number(-1), exp.Literal.number(1)

    def ref_of(table: exp.Table) -> TableRef:
        ref = resolve(table)
        assert ref is not None
        return ref

    def is_changed(table: exp.Table) -> bool:
        ref = resolve(table)
        return ref is not None and ref in changes

    def logged(table: exp.Table, old: exp.Expr, new: exp.Expr) -> exp.Select:
        ref = ref_of(table)
        change = changes[ref]
        return (
            exp.select(*columns_of(ctx.input_columns[ref], "c"), _weight(old.copy(), new.copy()))
            .from_(change_log(ref).to_table(alias="c"))
            .where(batch_range(change.after, change.upto, "c"))
        )

    def delta_rows(table: exp.Table) -> exp.Select:
        return logged(table, minus, plus)

    def old_rows(table: exp.Table) -> exp.Query:
        ref = ref_of(table)
        now = select_from(ctx.physical_of.get(ref, ref), ctx.input_columns[ref])
        return exp.union(
            now.select(exp.alias_(plus.copy(), WEIGHT, quoted=True)), logged(table, plus, minus), distinct=False
        )

    return is_changed, delta_rows, old_rows


def kept_value_tables(compiled: CompiledModel) -> list[TableRef]:
    """The tables of (group, value) multiplicities a model folding signed deltas keeps beside
    its group state, one per value set of its DISTINCT aggregates (what ``plan`` shows)."""
    top = compiled.keys.inlined
    count = len(value_sets(top)) if isinstance(top, exp.Select) else 0
    return [distinct_state(compiled.model.ref, index) for index in range(count)]


def _rows_before_tables(
    ctx: ModelContext,
    top: exp.Select,
    resolve: Callable[[exp.Table], TableRef | None],
    is_changed: Callable[[exp.Table], bool],
    delta_rows: Callable[[exp.Table], exp.Select],
    touched: exp.Table,
) -> tuple[list[Item], list[TableRef], Before, Before]:
    """Per changed table and partition column of ``top`` (the query read per partition),
    scratch tables of its rows in the touched partitions now and before the change (from the
    rows now: the table is read once): the statements, the tables, and how the branches read
    them."""
    compiled = ctx.compiled
    tables: dict[tuple[TableRef, str], tuple[TableRef, TableRef]] = {}
    made: list[Item] = []
    occurrences: dict[tuple[TableRef, str], list[exp.Table]] = {}
    for table, column in changed_anchors(top, is_changed):
        ref = resolve(table)
        assert ref is not None
        occurrences.setdefault((ref, column), []).append(table)
    for (ref, column), read in occurrences.items():
        temporary = ctx.capabilities.temp_tables
        pair = tuple(work_table(compiled.model.ref, f"{p}{len(tables)}", temporary) for p in ("pnow", "pold"))
        tables[(ref, column)] = (pair[0], pair[1])
        columns = read_columns(top, [t for t in top.find_all(exp.Table) if resolve(t) == ref], ctx.input_columns[ref])
        rows = select_from(ctx.physical_of.get(ref, ref), columns)
        # only the rows some occurrence can read, now and in the change: the rest are in no branch
        readable, changed = own_filter(read, "t"), own_filter(read, "c")
        if readable is not None:
            rows = rows.where(readable)
        key = exp.column(column, table="t", quoted=True)
        rows_now = rows_in_touched(rows, key, touched, by_index=ctx.dialect == "postgres")
        made += table_created(ctx, pair[0], rows_now, "rows now, touched partitions")
        now = select_from(pair[0], columns)
        change = delta_rows(read[0]).where(in_touched(exp.column(column, table="c", quoted=True), touched))
        if changed is not None:
            change = change.where(changed)
        # the read columns, and the change's weights turned round: old images +1, new ones -1
        change.set(
            "expressions",
            [*columns_of(columns, "c"), _weight(exp.Literal.number(1), exp.Literal.number(-1))],
        )
        query = rows_before(now.select(exp.alias_(exp.Literal.number(1), WEIGHT, quoted=True)), change, columns)
        made += table_created(ctx, pair[1], query, "rows before the change, touched partitions")

    def reader(which: int) -> Before:
        def read(table: exp.Table, column: str) -> exp.Table:
            ref = resolve(table)
            assert ref is not None
            return tables[(ref, column)][which].to_table()

        return read

    return made, [t for pair in tables.values() for t in pair], reader(0), reader(1)


def _touched(
    ctx: ModelContext,
    top: exp.Select,
    is_changed: Callable[[exp.Table], bool],
    delta_rows: Callable[[exp.Table], exp.Select],
) -> tuple[TableRef, list[Item]]:
    """The scratch table of the partition keys the change touches (``top``: the query read
    per partition), and its statements."""
    temporary = ctx.capabilities.temp_tables
    touched = work_table(ctx.compiled.model.ref, "touched", temporary)
    query = rename_relations(build_touched(top, is_changed, delta_rows), ctx.physical_of, ctx.default_schema)
    return touched, table_created(ctx, touched, query, "touched partitions")


def average_type(dialect: str) -> str:
    """The type an AVG is finalised in from its stored sum and count: what the warehouse's
    own AVG of an integer returns (``signed_shape.AVG_FROM_SUM_AND_COUNT``)."""
    return "NUMERIC" if dialect == "postgres" else "DOUBLE"


def state_is_current(state_batch: int | None, batch: int) -> bool:
    """Whether the stored group state is the one of the model's last batch (``batch`` is
    the one this step records): folded into, else rebuilt from the inputs."""
    return state_batch == batch - 1


def state_batch_statements(name: str, batch: int) -> list[Item]:
    """Record, in the model's transaction, that the state named ``name`` matches ``batch``."""
    marker = exp.column("relation").eq(exp.Literal.string(name))
    return [
        Statement(exp.delete(STATES.to_table(), where=marker), "group state: its batch", transaction=True),
        Statement(
            insert_into(STATES, ["relation", "batch"], exp.select(exp.Literal.string(name), exp.Literal.number(batch))),
            "group state: its batch",
            transaction=True,
        ),
    ]


Create = Callable[[TableRef, exp.Query, str], list[Item]]


@dataclass(frozen=True)
class Fold:
    """A stored group state with a signed delta folded in (the fold's own order: stored state
    plus delta per touched group, MIN/MAX recomputed where the extreme left)."""

    before: list[Item]  # the recomputed groups' and the next state's scratch tables
    held: exp.Select  # the touched groups after the change, those left at zero rows dropped
    during: list[Item]  # the stored state's touched groups replaced, in the model's transaction
    recomputed: bool  # whether a MIN/MAX recompute table was made (a scratch table to drop)


def fold_into_state(
    top: exp.Select,
    key: list[str],
    tables: tuple[TableRef, TableRef, TableRef, TableRef],
    state_query: exp.Query,
    create: Create,
    subject: str,
    distinct_changes: tuple[exp.Query, ...] = (),
) -> Fold:
    """``tables``: the stored state, the delta per group (made), and the scratch tables of the
    groups recomputed and of the next state; ``state_query`` the groups from the inputs (for
    the recompute). A group at zero rows leaves the state, unless ``top`` has no GROUP BY (a
    one-row aggregate keeps its row)."""
    state, delta, recompute, after = tables
    names = [*key, ROWS, *(part for part, _ in state_parts(aggregates_of(top)))]
    before: list[Item] = []
    recompute_query = build_recompute_keys(top, key, delta.to_table(alias="d"), state.to_table(alias="s"))
    if recompute_query is not None:
        before += create(recompute, recompute_query, f"{subject}: groups whose MIN/MAX left")
    following = build_next_state(
        top,
        key,
        state.to_table(alias="s"),
        delta.to_table(alias="d"),
        recompute.to_table(alias="r") if recompute_query is not None else None,
        state_query,
        distinct_changes,
    )
    before += create(after, following, f"{subject}: next state of the touched groups")
    held = select_from(after, names, "n")
    if top.args.get("group") is not None:
        held = held.where(exp.GT(this=exp.column(ROWS, table="n", quoted=True), expression=exp.Literal.number(0)))
    touched = matches(delta.to_table(alias="k"), key, state.name)
    during: list[Item] = [
        Statement(
            exp.delete(state.to_table(), where=touched), f"{subject}: delete the touched groups", transaction=True
        ),
        Statement(insert_into(state, names, held), f"{subject}: insert them again", transaction=True),
    ]
    return Fold(before, held, during, recompute_query is not None)


def rebuilt_state_statements(ctx: ModelContext) -> list[Item]:
    """A rebuilt model's group state, written in the rebuild's transaction: the next change
    folds into it instead of building it from the inputs, a second pass as dear as the
    rebuild, which would also teach the cost model that folding is dear."""
    compiled = ctx.compiled
    keys = compiled.keys
    if (
        (keys.not_signed and not keys.partitions)
        or keys.key is None
        or not isinstance(keys.inlined, exp.Select)
        or not ctx.capabilities.transactions
        or compiled.model.config.materialized != "incremental"
    ):
        return []
    query = rename_relations(build_state_query(keys.inlined, keys.key), ctx.physical_of, ctx.default_schema)
    state = aggregate_state(compiled.model.ref)
    rebuilt = table_created(ctx, state, query, "group state from the inputs", scratch=False, transaction=True)
    for index, values in enumerate(value_sets(keys.inlined)):
        query = rename_relations(
            build_values_query(keys.inlined, keys.key, values), ctx.physical_of, ctx.default_schema
        )
        store = distinct_state(compiled.model.ref, index)
        rebuilt += table_created(ctx, store, query, "DISTINCT values from the inputs", scratch=False, transaction=True)
    return rebuilt + state_batch_statements(str(compiled.model.ref), ctx.batch)


def signed_statements(
    ctx: ModelContext,
    changes: dict[TableRef, InputChange],
    resolve: Callable[[exp.Table], TableRef | None],
    state_batch: int | None,
) -> list[Item]:
    """The step's statements; ``state_batch``: the model batch the stored state matches
    (``StateSnapshot.aggregate_states``), which decides whether it is folded into or rebuilt."""
    compiled = ctx.compiled
    keys = compiled.keys
    assert keys.key is not None and isinstance(keys.inlined, exp.Select)
    top, key = keys.inlined, keys.key
    name = str(compiled.model.ref)
    temporary = ctx.capabilities.temp_tables
    state = aggregate_state(compiled.model.ref)
    delta, recompute, after = (
        work_table(compiled.model.ref, part, temporary) for part in ("delta", "recompute", "next")
    )
    is_changed, delta_rows, old_rows = signed_sources(ctx, changes, resolve)

    def physical(query: exp.Query) -> exp.Query:
        return rename_relations(query, ctx.physical_of, ctx.default_schema)

    def create(
        table: TableRef, query: exp.Query, purpose: str, scratch: bool = True, transaction: bool = False
    ) -> list[Item]:
        return table_created(ctx, table, query, purpose, scratch, transaction)

    names = [*key, ROWS, *(part for part, _ in state_parts(aggregates_of(top)))]
    sets = value_sets(top)
    stores = [distinct_state(compiled.model.ref, index) for index in range(len(sets))]
    moved = [work_table(compiled.model.ref, f"values{index}", temporary) for index in range(len(sets))]
    before: list[Item] = []
    scratch = [delta, recompute, after, *moved]
    current = state_is_current(state_batch, ctx.batch)
    # where the DISTINCT values are folded into: their change and the delta from one table of
    # the weighted rows (the inputs read once for both)
    shared = work_table(compiled.model.ref, "signed", temporary) if current and sets else None
    # DuckDB, a model no model reads: the stored pairs the change moves are deleted by the rowid
    # their lookup found them at. A rowid is stable within a transaction only, so the statements
    # from the lookup to that DELETE run in the model's transaction (none of the unlogged
    # form's statements runs outside it, ``replace_keys.replaced_unlogged``)
    by_rowid = shared is not None and ctx.dialect == "duckdb" and replaced_unlogged(ctx, changes)
    if shared is not None:
        rows_query = build_signed_rows(top, key, is_changed, delta_rows, old_rows)
        before += create(shared, physical(rows_query), "weighted rows of the change")
        scratch.append(shared)
    if partitioned_form(keys, changes):  # the planner: where it is the only form, it applies
        assert isinstance(keys.written, exp.Select)
        touched, touching = _touched(ctx, keys.written, is_changed, delta_rows)
        before += touching
        made, olds, now, then = _rows_before_tables(
            ctx, keys.written, resolve, is_changed, delta_rows, touched.to_table()
        )
        before += made
        delta_query = physical(build_partition_delta(keys.written, key, is_changed, now, then, touched.to_table()))
        scratch += [touched, *olds]
    elif shared is not None:
        delta_query = build_delta_from_rows(top, key, shared.to_table(alias="r"))
    else:
        delta_query = physical(build_delta(top, key, is_changed, delta_rows, old_rows))
    before += create(delta, delta_query, "signed delta per group")
    during: list[Item] = []
    if not current:
        # The state of every group from the inputs as they are now: already after the change.
        before += create(state, physical(build_state_query(top, key)), "group state from the inputs", scratch=False)
        for store, values in zip(stores, sets, strict=True):
            query = physical(build_values_query(top, key, values))
            before += create(store, query, "DISTINCT values from the inputs", scratch=False)
        following = select_from(state, names, "s").where(matches(delta.to_table(alias="k"), key, "s"))
        before += create(after, following, "next group state", transaction=by_rowid)
    else:
        for store, values, table in zip(stores, sets, moved, strict=True):
            assert shared is not None
            query = build_values_next_from_rows(
                key, values, store.to_table(alias="m"), shared.to_table(alias="r"), by_rowid
            )
            before += create(table, query, "DISTINCT values: their rows after the change", transaction=by_rowid)
        fold = fold_into_state(
            top,
            key,
            (state, delta, recompute, after),
            physical(build_state_query(top, key)),
            lambda table, query, purpose: create(table, query, purpose, transaction=by_rowid),
            "group state",
            tuple(
                build_distinct_change(top, key, values, table.to_table(alias="v"))
                for values, table in zip(sets, moved, strict=True)
            ),
        )
        before += fold.before
        during += fold.during
        for store, table in zip(stores, moved, strict=True):
            pairs = value_columns(key)
            held = select_from(table, pairs, "v").where(
                exp.GT(this=exp.column(ROWS, table="v", quoted=True), expression=exp.Literal.number(0))
            )
            delete = (
                delete_found(store, table)
                if by_rowid
                else exp.delete(store.to_table(), where=value_keys_match(table.to_table(alias="k"), key, store.name))
            )
            during += [
                Statement(delete, "DISTINCT values: delete the changed ones", transaction=True),
                Statement(
                    insert_into(store, pairs, held), "DISTINCT values: insert those still held", transaction=True
                ),
            ]
    during += state_batch_statements(name, ctx.batch)
    avg_type = average_type(ctx.dialect)
    prepared = PreparedRows(
        affected=exp.select(*columns_of(key, "d")).from_(delta.to_table(alias="d")) if key else None,
        recomputed=build_finalise(top, key, after.to_table(), avg_type),
        before=before,
        during=during,
        scratch=scratch,
        in_transaction=by_rowid,
    )
    return incremental_statements(ctx, changes, resolve, prepared=prepared)


def partition_key_statements(
    ctx: ModelContext, changes: dict[TableRef, InputChange], resolve: Callable[[exp.Table], TableRef | None]
) -> list[Item]:
    """A row-level model whose changed inputs are read through one partition key (TPC-H
    Q20's nested IN): its keys are the output keys of its rows in the touched partitions,
    now and before the change (``signed_partition.build_partition_keys``), recomputed and
    replaced as the other keyed strategies do."""
    compiled = ctx.compiled
    keys = compiled.keys
    assert keys.key and isinstance(keys.inlined, exp.Select)
    is_changed, delta_rows, _ = signed_sources(ctx, changes, resolve)
    touched, before = _touched(ctx, keys.inlined, is_changed, delta_rows)
    rows, tables, now, then = _rows_before_tables(
        ctx, keys.inlined, resolve, is_changed, delta_rows, touched.to_table()
    )
    affected = build_partition_keys(keys.inlined, keys.key, is_changed, now, then, touched.to_table())
    prepared = PreparedRows(
        affected=rename_relations(affected, ctx.physical_of, ctx.default_schema),
        recomputed=restrict_to_keys(compiled.physical_sql, keys.key, scratch_table(ctx, "keys").to_table(alias="k")),
        before=before + rows,
        during=[],
        scratch=[touched, *tables],
    )
    return incremental_statements(ctx, changes, resolve, prepared=prepared)
