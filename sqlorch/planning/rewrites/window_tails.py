"""``extend windows at partition ends``: a window chain under a GROUP BY
(``analysis/window_tails.py``, the benchmark's sessions) whose changed partitions only gained
rows past their last one is maintained from a *tail* per partition, kept in
``_sqlorch.tails__<model>``: the last row's input columns and its running window values.

Per touched partition the change decides the path (``_parts``):

- *append*: the change holds only new images of the partition, none NULL in the partition
  or order columns, each order key above the tail's and unique among them. The windows run
  over the tail row and the new rows alone; each running value is corrected by the tail's
  stored value, with the tail's own contribution left out of the frame (the argument is
  NULL on the tail row, ``_corrected``), so a new row's value is the value a full
  evaluation gives it, whatever the tail row's recomputed inputs (its NULL ``lag``). The
  old rows' values do not change. The new rows' groups are folded into the stored groups
  (``add_partial_aggregates.combine``: inserts only, so MIN/MAX combine too).
- *replace*: anything else (late rows, deletes, updates, ties or NULLs at the tail, a NULL
  partition key): the partition's rows now go through the windows whole and its groups
  replace the stored ones, as ``delete+insert keys`` does.

The model's rows of every touched partition are then replaced by ``replace_keys`` (its key
is the partition: the stored groups of an appended partition are written back with the
folded ones). The tails of the touched partitions are replaced in the model's transaction
and their batch recorded there (``store.tails_record``): a state not of the model's last
batch (first run, another strategy ran, ``--full-refresh``, a crash) is rebuilt from the
input before the change is read, and every touched partition then takes the replace path.
A rebuild of the model writes the tails too (``rebuilt_tail_statements``).
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.analysis.window_tails import WindowTails, chain, from_alias, running, windows
from sqlorch.execution.statements import (
    batch_range,
    columns_of,
    delete_found,
    found_at,
    insert_into,
    select_from,
)
from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.add_partial_aggregates import combine
from sqlorch.planning.rewrites.model_statements import ModelContext, Resolve, mentions, stored_columns, table_created
from sqlorch.planning.rewrites.replace_keys import PreparedRows, incremental_statements, replaced_unlogged
from sqlorch.planning.rewrites.signed_aggregates import matches
from sqlorch.planning.rewrites.signed_statements import state_batch_statements, state_is_current
from sqlorch.planning.steps import InputChange, Item, Statement
from sqlorch.refs import TableRef
from sqlorch.state.store import OLD_COLUMN, change_log, tail_state, tails_record, work_table

TAIL = "_sqlorch_tail"  # 1 on a partition's tail row, 0 on the rows the windows are wanted for
APPEND = "_sqlorch_append"  # per touched partition: 1 extended at its end, 0 replaced
NEXT = "_sqlorch_next"  # NULL on a partition's last row in the windows' order


def stored(n: int) -> str:
    """The ``n``-th running window's value at the tail, as the tails table keeps it."""
    return f"_sqlorch_s{n}"


def _value(n: int) -> str:
    return f"_sqlorch_v{n}"


def _carried(name: str) -> str:
    return f"_sqlorch_c_{name}"


def _corrected(window: exp.Window, alias: str, n: int) -> exp.Expr:
    """The running window's value on a row that is not the tail: its value over the rows after
    the tail (the tail's argument NULL, outside the count) plus the value stored at the tail.
    ``row_number()`` is the running count of rows (order keys unique past the tail)."""
    function = window.this
    on_tail = exp.column(TAIL, table=alias, quoted=True).eq(exp.Literal.number(1))
    argument = exp.Literal.number(1) if isinstance(function, exp.RowNumber) else function.this
    if isinstance(argument, exp.Star):
        argument = exp.Literal.number(1)
    blanked = exp.Case(ifs=[exp.If(this=on_tail, true=exp.null())], default=argument.copy())
    counted = exp.Sum(this=blanked) if isinstance(function, exp.Sum) else exp.Count(this=blanked)
    spec = window.args.get("spec")
    if isinstance(function, exp.RowNumber):
        spec = exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW")
    over = exp.Window(
        this=counted,
        partition_by=[p.copy() for p in window.args.get("partition_by") or []],
        order=window.args["order"].copy(),
        spec=spec.copy() if spec is not None else None,
        over="OVER",
    )
    kept = exp.func("coalesce", exp.column(stored(n), table=alias, quoted=True), exp.Literal.number(0))
    return exp.paren(exp.Add(this=kept, expression=over))


def tail_chain(tails: WindowTails, source: exp.Query) -> exp.Select:
    """The chain below the GROUP BY over ``source`` (the input's columns the chain reads, the
    tail flag, the stored values): every row's model columns, with each level carrying the
    flag, the stored values, the input columns and the corrected running values up."""
    top = tails.query.copy()
    levels = chain(top)[:-1]
    # the last rows are numbered (``NEXT``) at the highest level with windows, in their sort,
    # and carried up from there
    marking = max((level for level, select in enumerate(levels) if next(windows(select), None)), default=None)
    n = 0
    carried: list[str] = []  # the running values of the levels below
    for level, select in enumerate(levels):
        alias = from_alias(select)
        found = [window.copy() for window in windows(select)]
        if level == 0:
            select.set("from_", exp.From(this=source.subquery(alias)))
        extra: list[exp.Expr] = [exp.column(TAIL, table=alias, quoted=True).as_(TAIL, quoted=True)]
        extra += [
            exp.column(stored(i), table=alias, quoted=True).as_(stored(i), quoted=True) for i in range(tails.running)
        ]
        extra += [
            exp.column(c if level == 0 else _carried(c), table=alias, quoted=True).as_(_carried(c), quoted=True)
            for c in tails.columns
        ]
        extra += [exp.column(v, table=alias, quoted=True).as_(v, quoted=True) for v in carried]
        for window in list(windows(select)):
            if not running(window):
                continue
            corrected = _corrected(window, alias, n)
            window.replace(corrected)
            extra.append(corrected.copy().as_(_value(n), quoted=True))
            carried.append(_value(n))
            n += 1
        if level == marking:  # the windows' own partitions and order (one for all): sorted once with them
            last = exp.Window(
                this=exp.Lead(this=exp.Literal.number(1)),
                partition_by=[p.copy() for p in found[0].args.get("partition_by") or []],
                order=found[0].args["order"].copy(),
                over="OVER",
            )
            extra.append(last.as_(NEXT, quoted=True))
        elif marking is not None and level > marking:
            extra.append(exp.column(NEXT, table=alias, quoted=True).as_(NEXT, quoted=True))
        select.set("expressions", [*select.expressions, *extra])
    return levels[-1]


def tail_rows(tails: WindowTails, rows: exp.Expr) -> exp.Select:
    """Per partition its last row of ``rows`` (a ``tail_chain``'s) that is not a tail: its
    input columns and running values, the tails table's columns. Last in the windows' own
    order (``NEXT``, numbered in the chain's sort: a window here would sort every row again)."""
    last = exp.and_(
        exp.column(TAIL, table="m", quoted=True).eq(exp.Literal.number(0)),
        exp.Is(this=exp.column(NEXT, table="m", quoted=True), expression=exp.null()),
    )
    return (
        exp.select(
            *[exp.column(_carried(c), table="m", quoted=True).as_(c, quoted=True) for c in tails.columns],
            *[exp.column(_value(i), table="m", quoted=True).as_(stored(i), quoted=True) for i in range(tails.running)],
        )
        .from_(rows)
        .where(last)
    )


def _input(ctx: ModelContext, tails: WindowTails) -> TableRef:
    """The chain's input table as the project names it (the model reads one table: the strategy
    applies only so, ``strategies.window_tails``)."""
    (ref,) = [r for r in ctx.compiled.model.inputs if mentions({tails.table}, r)]
    return ref


def _whole_input(ctx: ModelContext, tails: WindowTails, ref: TableRef) -> exp.Select:
    """Every input row, none a tail, nothing stored before it (0: a typed NULL is not portable): the
    windows as a full evaluation runs them."""
    source = ctx.physical_of.get(ref, ref)
    return select_from(source, list(tails.columns), "x").select(
        exp.Literal.number(0).as_(TAIL, quoted=True),
        *[exp.Literal.number(0).as_(stored(i), quoted=True) for i in range(tails.running)],
    )


def _tails_from_inputs(ctx: ModelContext, tails: WindowTails, ref: TableRef) -> exp.Select:
    return tail_rows(tails, tail_chain(tails, _whole_input(ctx, tails, ref)).subquery("m"))


def rebuilt_tail_statements(ctx: ModelContext) -> list[Item]:
    """A rebuilt model's tails, written in the rebuild's transaction: the next append extends
    them instead of building them from the input, a pass as dear as the rebuild."""
    tails = ctx.compiled.keys.tails
    if (
        tails is None
        or not ctx.capabilities.transactions
        or ctx.compiled.model.config.materialized != "incremental"
        or len(ctx.compiled.model.inputs) != 1
    ):
        return []
    ref = _input(ctx, tails)
    table = tail_state(ctx.compiled.model.ref)
    made = table_created(ctx, table, _tails_from_inputs(ctx, tails, ref), "window tails from the inputs", False, True)
    return made + state_batch_statements(tails_record(ctx.compiled.model.ref), ctx.batch)


def _after(tails: WindowTails, row: str, tail: str) -> exp.Expr:
    """The row's order key above the tail's (lexicographically; NULL where a NULL decides)."""
    terms = []
    for i, name in enumerate(tails.order):
        above = exp.GT(
            this=exp.column(name, table=row, quoted=True), expression=exp.column(name, table=tail, quoted=True)
        )
        terms.append(exp.and_(_equal(row, tail, list(tails.order[:i])), above) if i else above)
    return exp.or_(*terms) if len(terms) > 1 else terms[0]


def _parts(tails: WindowTails, log: TableRef, change: InputChange, state: TableRef, current: bool) -> exp.Select:
    """Per touched partition whether it is extended at its end (``APPEND`` 1) or replaced:
    only new images, no NULL partition or order column, each order key above the tail's
    (or no tail: a new partition) and unique among the partition's changed rows."""
    p, o = list(tails.partition), list(tails.order)
    if not current:  # the tails were built from the input as it is now: every partition replaced
        keyed = (
            exp.select(*columns_of(p, "c"))
            .from_(log.to_table(alias="c"))
            .where(batch_range(change.after, change.upto, "c"))
        )
        return (
            exp.select(*columns_of(p, "g"), exp.Literal.number(0).as_(APPEND, quoted=True))
            .from_(keyed.subquery("g"))
            .group_by(*columns_of(p, "g"))
        )
    nulls = [exp.column(c, table="c", quoted=True).is_(exp.null()) for c in (*p, *o)]
    tailed = exp.column(p[0], table="t", quoted=True).is_(exp.null()).not_()
    behind = exp.and_(tailed, exp.not_(exp.func("coalesce", _after(tails, "c", "t"), exp.false())))
    bad = exp.Case(
        ifs=[
            exp.If(
                this=exp.or_(exp.column(OLD_COLUMN, table="c", quoted=True), *nulls, behind), true=exp.Literal.number(1)
            )
        ],
        default=exp.Literal.number(0),
    )
    per_key = (
        exp.select(
            *columns_of(p, "c"),
            exp.Case(
                ifs=[
                    exp.If(
                        this=exp.GT(this=exp.Count(this=exp.Star()), expression=exp.Literal.number(1)),
                        true=exp.Literal.number(1),
                    )
                ],
                default=exp.Max(this=bad),
            ).as_("_sqlorch_bad", quoted=True),
        )
        .from_(log.to_table(alias="c"))
        .join(
            state.to_table(alias="t"),
            on=_equal("c", "t", p),
            join_type="LEFT",
        )
        .where(batch_range(change.after, change.upto, "c"))
        .group_by(*columns_of(p, "c"), *columns_of(o, "c"))
    )
    good = exp.Max(this=exp.column("_sqlorch_bad", table="g", quoted=True)).eq(exp.Literal.number(0))
    flag = exp.Case(ifs=[exp.If(this=good, true=exp.Literal.number(1))], default=exp.Literal.number(0))
    return (
        exp.select(*columns_of(p, "g"), flag.as_(APPEND, quoted=True))
        .from_(per_key.subquery("g"))
        .group_by(*columns_of(p, "g"))
    )


def _equal(left: str, right: str, names: list[str], right_names: list[str] | None = None) -> exp.Expr:
    """The columns equal, not NULL-safe: for partitions an appended one (never NULL) is in."""
    pairs = zip(names, right_names if right_names is not None else names, strict=True)
    return exp.and_(
        *[exp.column(a, table=left, quoted=True).eq(exp.column(b, table=right, quoted=True)) for a, b in pairs]
    )


def _appended(value: int) -> exp.Expr:
    """The touched partition (``parts`` joined as ``w``) is extended (1) or replaced (0)."""
    return exp.column(APPEND, table="w", quoted=True).eq(exp.Literal.number(value))


def _mini_input(
    ctx: ModelContext, tails: WindowTails, ref: TableRef, change: InputChange, parts: TableRef, state: TableRef
) -> exp.Query:
    """The rows the windows run over: the tails and new rows of the appended partitions (each
    carrying its tail's stored values), and every row now of the replaced ones."""
    p, names = list(tails.partition), list(tails.columns)
    values = [stored(i) for i in range(tails.running)]
    tail_branch = (
        exp.select(*columns_of(names, "t"), exp.Literal.number(1).as_(TAIL, quoted=True), *columns_of(values, "t"))
        .from_(state.to_table(alias="t"))
        .join(parts.to_table(alias="w"), on=_equal("t", "w", p))
        .where(_appended(1))
    )
    new_branch = (
        exp.select(*columns_of(names, "c"), exp.Literal.number(0).as_(TAIL, quoted=True), *columns_of(values, "t"))
        .from_(change_log(ref).to_table(alias="c"))
        .join(parts.to_table(alias="w"), on=_equal("c", "w", p))
        .join(
            state.to_table(alias="t"),
            on=_equal("c", "t", p),
            join_type="LEFT",
        )
        .where(_appended(1))
        .where(batch_range(change.after, change.upto, "c"))
        .where(exp.not_(exp.column(OLD_COLUMN, table="c", quoted=True)))
    )
    source = ctx.physical_of.get(ref, ref)
    replaced_branch = (
        exp.select(
            *columns_of(names, "x"),
            exp.Literal.number(0).as_(TAIL, quoted=True),
            *[exp.Literal.number(0).as_(v, quoted=True) for v in values],
        )
        .from_(source.to_table(alias="x"))
        .join(parts.to_table(alias="w"), on=null_safe_match("x", "w", p, any_types=True))
        .where(_appended(0))
    )
    return exp.union(exp.union(tail_branch, new_branch, distinct=False), replaced_branch, distinct=False)


def _groups_query(tails: WindowTails, rows: TableRef) -> exp.Select:
    """The model's GROUP BY over the rows the windows gave (not the tails)."""
    top = tails.query.copy()
    below = chain(top)[-2]
    alias = from_alias(top)
    names = [s.alias_or_name for s in below.selects]
    kept = select_from(rows, names, "m").where(exp.column(TAIL, table="m", quoted=True).eq(exp.Literal.number(0)))
    top.set("from_", exp.From(this=kept.subquery(alias)))
    return top


def _combined(kind: str, name: str) -> exp.Expr:
    """A stored group's aggregate (``s``) with the new rows' (``q``) folded in."""
    return combine(kind, exp.column(name, table="s", quoted=True), exp.column(name, table="q", quoted=True)).as_(
        name, quoted=True
    )


def _recomputed(ctx: ModelContext, tails: WindowTails, groups: TableRef, parts: TableRef, kept: TableRef) -> exp.Query:
    """The touched groups after the change: the replaced partitions' as the windows gave them;
    the appended ones' new rows' groups with their stored group (``kept``) folded in."""
    columns = stored_columns(ctx)
    outputs, p = list(tails.partition_outputs), list(tails.partition)
    on_parts = null_safe_match("q", "w", outputs, p, any_types=True)
    replaced = select_from(groups, columns, "q").join(parts.to_table(alias="w"), on=on_parts).where(_appended(0))
    folded = (
        exp.select(
            *[
                _combined(tails.kinds[n], n) if n in tails.kinds else exp.column(n, table="q", quoted=True)
                for n in columns
            ]
        )
        .from_(groups.to_table(alias="q"))
        .join(parts.to_table(alias="w"), on=on_parts.copy())
        .join(
            kept.to_table(alias="s"), on=null_safe_match("q", "s", list(tails.group), any_types=True), join_type="LEFT"
        )
        .where(_appended(1))
    )
    return exp.union(replaced, folded, distinct=False)


def _touched_groups(tails: WindowTails, groups: TableRef, kept: TableRef) -> exp.Query:
    """The groups the change touches: every group the windows gave (an appended partition's
    from its tail's on, a replaced one's all) and the stored groups of the replaced partitions."""
    group = list(tails.group)
    return exp.union(select_from(groups, group, "q"), select_from(kept, group, "s"), distinct=True)


def _stored_groups(
    ctx: ModelContext, tails: WindowTails, groups: TableRef, parts: TableRef, row_ids: bool
) -> exp.Select:
    """In one scan of the table, the stored groups the change touches: every group of a
    replaced partition, and those of an appended one the new rows fold into (joins, not an
    EXISTS under an OR, which DuckDB runs as a mark join over every row of the partitions).
    With ``row_ids`` each row's DuckDB rowid too: these are all the stored rows of the touched
    groups (every group the windows gave is of a touched partition), deleted by it."""
    group, outputs, p = list(tails.group), list(tails.partition_outputs), list(tails.partition)
    reached = exp.column(outputs[0], table="q", quoted=True).is_(exp.null()).not_()
    found = select_from(ctx.physical, stored_columns(ctx), "s")
    if row_ids:
        found = found.select(found_at("s"))
    return (
        found.join(parts.to_table(alias="w"), on=null_safe_match("s", "w", outputs, p, any_types=True))
        .join(groups.to_table(alias="q"), on=null_safe_match("s", "q", group, any_types=True), join_type="LEFT")
        .where(exp.or_(_appended(0), exp.and_(_appended(1), reached)))
    )


def tail_statements(ctx: ModelContext, changes: dict[TableRef, InputChange], resolve: Resolve) -> list[Item]:
    """The step's statements: the touched partitions sorted into appended and replaced, the
    windows run over the tails and new rows (and the replaced partitions' rows), the groups
    folded or replaced, the model's rows of the touched partitions replaced
    (``replace_keys.incremental_statements``) and the tails moved on, in one transaction."""
    compiled = ctx.compiled
    tails = compiled.keys.tails
    assert tails is not None
    model = compiled.model.ref
    ref = _input(ctx, tails)
    change = changes[ref]
    temporary = ctx.capabilities.temp_tables
    state = tail_state(model)
    current = state_is_current(ctx.tails_state, ctx.batch)

    # DuckDB, a model no model reads: the touched groups' stored rows are deleted by the rowid
    # the stored-groups scan found them at, not by a second scan matching the groups; a rowid
    # is stable within a transaction only, so that scan opens the model's transaction
    by_rowid = ctx.dialect == "duckdb" and replaced_unlogged(ctx, changes)

    def create(
        table: TableRef, query: exp.Query, purpose: str, scratch: bool = True, transaction: bool = False
    ) -> list[Item]:
        return table_created(ctx, table, query, purpose, scratch, transaction)

    parts, rows, following, groups, kept = (
        work_table(model, part, temporary) for part in ("wparts", "wrows", "wtails", "wgroups", "wstored")
    )
    before: list[Item] = []
    if not current:  # from the input as it is now: already after the change
        before += create(state, _tails_from_inputs(ctx, tails, ref), "window tails from the inputs", False)
    log = change_log(ref)
    before += create(
        parts, _parts(tails, log, change, state, current), "window tails: touched partitions, appended or not"
    )
    mini = _mini_input(ctx, tails, ref, change, parts, state)
    before += create(rows, tail_chain(tails, mini), "windows over the tails and new rows, and the replaced partitions")
    before += create(
        following, tail_rows(tails, rows.to_table(alias="m")), "window tails: the touched partitions' last rows"
    )
    before += create(groups, _groups_query(tails, rows), "window tails: the rows' groups")
    p, group = list(tails.partition), list(tails.group)
    before += create(
        kept,
        _stored_groups(ctx, tails, groups, parts, by_rowid),
        "window tails: stored groups the change touches",
        transaction=by_rowid,
    )
    names = [*tails.columns, *(stored(i) for i in range(tails.running))]
    during: list[Item] = [
        Statement(
            exp.delete(state.to_table(), where=matches(parts.to_table(alias="k"), p, state.name)),
            "window tails: delete the touched",
            transaction=True,
        ),
        Statement(
            insert_into(state, names, select_from(following, names)),
            "window tails: insert them again",
            transaction=True,
        ),
        *state_batch_statements(tails_record(model), ctx.batch),
    ]
    # the touched groups replaced, not every row of the touched partitions (so the model's log
    # need not hold whole keys: ``strategies.window_tails``)
    scratch = [parts, rows, following, groups, kept]
    prepared = PreparedRows(
        _touched_groups(tails, groups, kept),
        _recomputed(ctx, tails, groups, parts, kept),
        before,
        during,
        scratch,
        in_transaction=by_rowid,
        key=group,
        delete=delete_found(ctx.physical, kept) if by_rowid else None,
    )
    return incremental_statements(ctx, changes, resolve, prepared=prepared)
