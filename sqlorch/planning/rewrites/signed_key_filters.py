"""Read only the rows of a delta branch's other sides that can join the change.

A branch of the delta rule joins one table's change (a few rows) with the other tables'
rows. Every conjunct ``X.a = C.b`` of an inner join between an item ``X`` and the changed
item ``C`` holds for every row the branch yields, so ``X`` may be cut down beforehand to
its rows whose ``a`` appears among the change's ``b``: a semi-join pushed into ``X``'s
scan. With several such conjuncts the semi-join matches them all (one ``EXISTS``, which
every target decorrelates into a semi-join; a row tuple ``IN`` is not portable). The cut
is the same filter the join applies, so the branch's result and weights are unchanged; what
changes is that a warehouse with an index or zone maps on ``a`` reads the matching rows
only, and every warehouse joins fewer rows.

Only the items whose join columns equal the change's (directly, or through a chain of
equalities) are filtered: a second hop on other columns would read the first one's table
again inside the filter. The filter is placed on the item itself, a
table wrapped in ``SELECT * ... WHERE``, so no optimizer has to move it there; an
aggregated derived table is filtered inside, on its group keys. The rows before the change
of an earlier changed table are not filtered (see ``filter_by_change``).
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.analysis.conditions import conjuncts
from sqlorch.analysis.inline_ctes import alias_identifier
from sqlorch.analysis.signed_shape import group_names, is_aggregated

KEYS_ALIAS = "_sqlorch_k"


def _filters(select: exp.Select) -> list[exp.Expr]:
    """The conditions every row of ``select``'s FROM satisfies: its WHERE and inner ONs."""
    roots: list[exp.Expr] = []
    where = select.args.get("where")
    if where is not None:
        roots.append(where.this)
    for join in select.args.get("joins") or []:
        on = join.args.get("on")
        if on is not None and not join.side and join.kind in ("", "INNER", "CROSS", None):
            roots.append(on)
    return [c for root in roots for c in conjuncts(root)]


def _pairs(select: exp.Select, changed: str) -> dict[str, list[tuple[exp.Column, exp.Column]]]:
    """Per other item's alias, its (own column, changed item's column) equalities, direct or
    through other columns (``o.k = l.k AND d.k = o.k``: ``d.k`` equals ``l.k`` too)."""
    parent: dict[tuple[str, str], tuple[str, str]] = {}
    columns: dict[tuple[str, str], exp.Column] = {}

    def root(name: tuple[str, str]) -> tuple[str, str]:
        while parent.get(name, name) != name:
            name = parent[name]
        return name

    for conjunct in _filters(select):
        if not isinstance(conjunct, exp.EQ):
            continue
        left, right = conjunct.this, conjunct.expression
        if not isinstance(left, exp.Column) or not isinstance(right, exp.Column) or not left.table or not right.table:
            continue
        ends = [(column.table, column.name.lower()) for column in (left, right)]
        for end, column in zip(ends, (left, right), strict=True):
            columns.setdefault(end, column)
        parent[root(ends[0])] = root(ends[1])
    classes: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for name in columns:
        classes.setdefault(root(name), []).append(name)
    found: dict[str, list[tuple[exp.Column, exp.Column]]] = {}
    for members in classes.values():
        theirs = [name for name in members if name[0] == changed]
        for name in members:
            if theirs and name[0] != changed:
                found.setdefault(name[0], []).append((columns[name], columns[theirs[0]]))
    return found


def _items(select: exp.Select) -> list[exp.Expr]:
    from_ = select.args.get("from_") or select.args.get("from")
    return ([from_.this] if from_ else []) + [join.this for join in select.args.get("joins") or []]


def _into_groups(item: exp.Subquery, on: list[tuple[exp.Column, exp.Column]], keys: exp.Subquery) -> bool:
    """Filter an aggregated derived table inside, on its GROUP BY expressions (a filter on
    a group key keeps or drops whole groups, so it may act before the grouping)."""
    inner = item.this
    if not isinstance(inner, exp.Select) or not is_aggregated(inner):
        return False
    names = group_names(inner)
    by_name = {s.alias_or_name.lower(): s.unalias() for s in inner.selects}
    if not on or any(mine.name.lower() not in names for mine, _ in on):
        return False
    pairs = [
        exp.EQ(
            this=by_name[mine.name.lower()].copy(),
            expression=exp.column(theirs.this.copy(), table=KEYS_ALIAS, quoted=True),
        )
        for mine, theirs in on
    ]
    inner.where(exp.Exists(this=exp.select(exp.Literal.number(1)).from_(keys).where(exp.and_(*pairs))), copy=False)
    return True


def filter_by_change(
    select: exp.Select, changed: exp.Subquery, weighted: set[int], keys_of: exp.Query | None = None
) -> None:
    """Wrap each item of ``select`` inner-joined by equality to ``changed`` (the change's
    rows) in a semi-join on the change's join columns; ``weighted`` (ids of the items that
    carry a weight column) follows the wrapped items; an aggregated derived table is filtered
    inside, on its group keys. ``keys_of``: rows holding every value of the change's join
    columns, cheaper to read than the change (default: the change itself)."""
    alias = changed.alias_or_name
    pairs = _pairs(select, alias)
    for item in _items(select):
        name = item.alias_or_name
        if item is changed or name not in pairs:
            continue
        keys = exp.Subquery(
            this=(keys_of or changed.this).copy(), alias=exp.TableAlias(this=exp.to_identifier(KEYS_ALIAS, quoted=True))
        )
        if isinstance(item, exp.Table):
            inner: exp.Expr = item.copy()
        elif id(item) in weighted:
            # an earlier changed table's rows before the change (a UNION ALL): wrapped, DuckDB
            # estimated the filtered union at a tenth of its rows and joined TPC-H Q9's part
            # and supplier into a 100M-row cross product first (4.1 s against 1.8 s unwrapped)
            continue
        else:
            if isinstance(item, exp.Subquery):
                _into_groups(item, pairs[name], keys)
            continue  # any other derived table: its columns are not a scan's
        on = [
            exp.EQ(this=mine.copy(), expression=exp.column(theirs.this.copy(), table=KEYS_ALIAS, quoted=True))
            for mine, theirs in pairs[name]
        ]
        match = exp.Exists(this=exp.select(exp.Literal.number(1)).from_(keys).where(exp.and_(*on)))
        wrapped = exp.Subquery(
            this=exp.select(exp.Star()).from_(inner).where(match),
            alias=exp.TableAlias(this=alias_identifier(item)),
        )
        item.replace(wrapped)
        if id(item) in weighted:
            weighted.discard(id(item))
            weighted.add(id(wrapped))
