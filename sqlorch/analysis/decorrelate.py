"""Subquery expressions of a WHERE rewritten as joins with derived tables, so that the
delta rules of joins and aggregates apply to them (``analysis/signed_shape.py``).

One pass over a qualified, CTE-inlined query. Each top-level conjunct of a SELECT's WHERE
(and of its derived tables' WHEREs) that is one of these becomes a derived table joined to
the SELECT's FROM, its condition moved to the WHERE:

- ``EXISTS (SELECT .. FROM t WHERE t.a = o.x AND p)``: derived table
  ``SELECT t.a AS k0 FROM t WHERE p GROUP BY t.a``, condition ``k0 = o.x``;
- ``x IN (SELECT t.a FROM t WHERE t.b = o.y AND p)``: ``SELECT t.a AS k0, t.b AS k1 FROM t
  WHERE p GROUP BY t.a, t.b``, ``k0 = x AND k1 = o.y``;
- ``x IN (SELECT t.a FROM t .. GROUP BY t.a HAVING h)``: the subquery itself, its column
  named ``k0``, ``k0 = x``;
- ``x < (SELECT f(agg) FROM t WHERE t.a = o.y AND p)``: ``SELECT t.a AS k0, f(agg) AS v
  FROM t WHERE p GROUP BY t.a``, ``k0 = o.y AND x < v``;
- ``x < (SELECT f(agg) FROM t WHERE p)`` (uncorrelated): ``SELECT f(agg) AS v FROM t WHERE
  p``, one row, ``x < v``.

Why each is exact: the GROUP BY makes the derived table's keys distinct, so an outer row
joins at most one of its rows, as it passes EXISTS or IN at most once; a NULL never equals,
in the join as in the subquery. A correlated scalar subquery over no rows is NULL, and its
comparison then rejects the outer row as the missing join row does; COUNT, which is 0
over no rows, is not rewritten (the "count bug"), nor is a scalar subquery under anything
that could accept a NULL (COALESCE, IS NULL, CASE, OR). NOT EXISTS and NOT IN (anti-joins),
correlations other than equality (TPC-H Q21's ``<>``) and subqueries elsewhere than a WHERE
conjunct keep their form: ``NotDecorrelated`` says which, and the planner keeps the
model's other strategies; where such a subquery reads its changed table through one key,
the model is maintained per touched partition instead (``analysis/partition.py``).

Like sqlglot's optimizer rules: one function, one job, a new tree returned.
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.analysis.conditions import conjuncts

PREFIX = "_sqlorch_sq"
COMPARISONS = (exp.EQ, exp.NEQ, exp.LT, exp.LTE, exp.GT, exp.GTE)
NULL_PROPAGATING = (exp.Mul, exp.Add, exp.Sub, exp.Div, exp.Neg, exp.Paren, exp.Cast)


class NotDecorrelated(Exception):
    """A subquery expression kept its form; the text says which and why."""


def _sources(select: exp.Select) -> list[exp.Expr]:
    from_ = select.args.get("from_") or select.args.get("from")
    return ([from_.this] if from_ else []) + [join.this for join in select.args.get("joins") or []]


def _split(inner: exp.Select) -> tuple[list[tuple[exp.Column, exp.Expr]], list[exp.Expr]]:
    """The inner WHERE as (inner column, outer expression) equalities and local conjuncts."""
    own = {source.alias_or_name for source in _sources(inner)}

    def is_outer(node: exp.Expr) -> bool:
        columns = [c for c in node.find_all(exp.Column) if c.table]
        return bool(columns) and all(c.table not in own for c in columns)

    def is_local(node: exp.Expr) -> bool:
        return all(c.table in own for c in node.find_all(exp.Column) if c.table)

    where = inner.args.get("where")
    pairs: list[tuple[exp.Column, exp.Expr]] = []
    local: list[exp.Expr] = []
    for conjunct in conjuncts(where.this if where else None):
        if is_local(conjunct) and not any(isinstance(n, (exp.Subquery, exp.Exists)) for n in conjunct.walk()):
            local.append(conjunct)
            continue
        if isinstance(conjunct, exp.EQ):
            left, right = conjunct.this, conjunct.expression
            if isinstance(right, exp.Column) and right.table in own and is_outer(left):
                left, right = right, left
            if isinstance(left, exp.Column) and left.table in own and is_outer(right):
                pairs.append((left, right))
                continue
        raise NotDecorrelated(f"subquery correlated by {conjunct.sql()[:80]}: only equalities decorrelate")
    return pairs, local


def _plain(inner: exp.Select, what: str) -> None:
    for name in ("limit", "offset", "order", "qualify", "distinct", "laterals"):
        if inner.args.get(name):
            raise NotDecorrelated(f"{what} with {name.upper()}")
    if any(isinstance(n, exp.Window) for s in inner.selects for n in s.walk()):
        raise NotDecorrelated(f"{what} with a window")


def _grouped(inner: exp.Select, pairs: list[tuple[exp.Column, exp.Expr]], local: list[exp.Expr]) -> exp.Select:
    """``inner``'s FROM and local WHERE, grouped by its correlated columns (named k0, k1...)."""
    select = exp.select(*[exp.alias_(column.copy(), f"k{i}", quoted=True) for i, (column, _) in enumerate(pairs)])
    from_ = inner.args.get("from_") or inner.args.get("from")
    if from_ is None:
        raise NotDecorrelated("a subquery without FROM")
    select.set("from_", from_.copy())
    select.set("joins", [join.copy() for join in inner.args.get("joins") or []] or None)
    if local:
        select = select.where(exp.and_(*[c.copy() for c in local]))
    if pairs:
        select = select.group_by(*[column.copy() for column, _ in pairs])
    return select


def _matches(alias: str, pairs: list[tuple[exp.Column, exp.Expr]]) -> list[exp.Expr]:
    return [
        exp.EQ(this=exp.column(f"k{i}", table=alias, quoted=True), expression=outer.copy())
        for i, (_, outer) in enumerate(pairs)
    ]


def _exists(node: exp.Exists, alias: str) -> tuple[exp.Select, list[exp.Expr]]:
    inner = node.this
    if not isinstance(inner, exp.Select):
        raise NotDecorrelated("EXISTS over a set operation")
    _plain(inner, "EXISTS")
    if inner.args.get("group") or inner.args.get("having"):
        raise NotDecorrelated("EXISTS over a grouped subquery")
    pairs, local = _split(inner)
    if not pairs:
        raise NotDecorrelated("uncorrelated EXISTS: every row or none")
    return _grouped(inner, pairs, local), _matches(alias, pairs)


def _in(node: exp.In, alias: str) -> tuple[exp.Select, list[exp.Expr]]:
    inner = node.args.get("query")
    inner = inner.this if isinstance(inner, exp.Subquery) else inner
    if not isinstance(inner, exp.Select) or len(inner.selects) != 1 or inner.selects[0].is_star:
        raise NotDecorrelated("IN over a subquery of more than one column or a set operation")
    _plain(inner, "IN")
    probe = node.this
    column = inner.selects[0].unalias()
    group = inner.args.get("group")
    if group is not None or inner.args.get("having"):
        groups = group.expressions if group is not None else []
        if _split(inner)[0] or len(groups) != 1 or groups[0] != column:
            raise NotDecorrelated("IN over a grouped subquery not grouped by its one column")
        derived = inner.copy()
        derived.set("expressions", [exp.alias_(column.copy(), "k0", quoted=True)])
        return derived, [exp.EQ(this=exp.column("k0", table=alias, quoted=True), expression=probe.copy())]
    if any(isinstance(n, exp.AggFunc) for n in column.walk()):
        raise NotDecorrelated("IN over an aggregate")
    pairs, local = _split(inner)
    if not isinstance(column, exp.Column):
        raise NotDecorrelated("IN over an expression")
    pairs = [(column, probe), *pairs]
    return _grouped(inner, pairs, local), _matches(alias, pairs)


def _scalar(node: exp.Subquery, alias: str) -> tuple[exp.Select, list[exp.Expr]]:
    inner = node.this
    if not isinstance(inner, exp.Select) or len(inner.selects) != 1:
        raise NotDecorrelated("scalar subquery of more than one column")
    _plain(inner, "scalar subquery")
    if inner.args.get("group") or inner.args.get("having"):
        raise NotDecorrelated("scalar subquery with GROUP BY: its row count is not one")
    value = inner.selects[0].unalias()
    if not any(isinstance(n, exp.AggFunc) for n in value.walk()):
        raise NotDecorrelated("scalar subquery without an aggregate: its row count is not one")
    pairs, local = _split(inner)
    if pairs and any(isinstance(n, exp.Count) for n in value.walk()):
        raise NotDecorrelated("correlated COUNT: 0 over no rows, which a join does not give")
    derived = _grouped(inner, pairs, local)
    derived.select(exp.alias_(value.copy(), "v", quoted=True), copy=False)
    return derived, _matches(alias, pairs)


def _null_rejecting(node: exp.Expr, conjunct: exp.Expr) -> bool:
    """A NULL in place of ``node`` makes ``conjunct`` NULL: only arithmetic and casts lead
    from it to the comparison that is the conjunct."""
    parent = node.parent
    while parent is not None and parent is not conjunct:
        if not isinstance(parent, NULL_PROPAGATING):
            return False
        parent = parent.parent
    return isinstance(conjunct, COMPARISONS)


def _rewrite_conjunct(conjunct: exp.Expr, alias: str, counter: list[int]) -> tuple[exp.Select, list[exp.Expr]] | None:
    """The derived table and the conjuncts that replace ``conjunct``; None: no subquery."""
    conjunct = conjunct.copy()
    for node in list(conjunct.walk(prune=lambda n: n is not conjunct and isinstance(n, exp.Select))):
        if isinstance(node, exp.Select):
            _decorrelate_select(node, counter)  # a subquery inside the subquery first (TPC-H Q20)
    if isinstance(conjunct, exp.Exists):
        return _exists(conjunct, alias)
    if isinstance(conjunct, exp.In) and conjunct.args.get("query") is not None:
        return _in(conjunct, alias)
    nested = (exp.Subquery, exp.Exists, exp.In)
    subqueries = [
        n for n in conjunct.walk(prune=lambda n: n is not conjunct and isinstance(n, nested)) if isinstance(n, nested)
    ]
    subqueries = [n for n in subqueries if not isinstance(n, exp.In) or n.args.get("query") is not None]
    if not subqueries:
        return None
    if isinstance(conjunct, exp.Not) and isinstance(conjunct.this, (exp.Exists, exp.In)):
        raise NotDecorrelated(f"NOT {type(conjunct.this).__name__.upper()}: an anti-join")
    scalar = subqueries[0]
    if len(subqueries) > 1 or not isinstance(scalar, exp.Subquery) or not _null_rejecting(scalar, conjunct):
        raise NotDecorrelated(f"a subquery inside {conjunct.sql()[:80]}")
    derived, matches = _scalar(scalar, alias)
    kept = conjunct.copy()
    for node in kept.walk():
        if isinstance(node, exp.Subquery) and node == scalar:
            node.replace(exp.column("v", table=alias, quoted=True))
            break
    return derived, [*matches, kept]


def _decorrelate_select(select: exp.Select, counter: list[int]) -> None:
    for source in _sources(select):
        if isinstance(source, exp.Subquery) and isinstance(source.this, exp.Select):
            _decorrelate_select(source.this, counter)
    where = select.args.get("where")
    kept: list[exp.Expr] = []
    for conjunct in conjuncts(where.this if where else None):
        alias = f"{PREFIX}{counter[0]}"
        counter[0] += 1
        rewritten = _rewrite_conjunct(conjunct, alias, counter)
        if rewritten is None:
            kept.append(conjunct)
            continue
        derived, conditions = rewritten
        select.join(derived.subquery(exp.to_identifier(alias, quoted=True)), copy=False)
        kept += conditions
    if where is not None:
        select.set("where", exp.Where(this=exp.and_(*kept)) if kept else None)
    for node in select.walk(prune=lambda n: n is not select and isinstance(n, exp.Subquery)):
        if isinstance(node, (exp.Exists, exp.In)) and (not isinstance(node, exp.In) or node.args.get("query")):
            raise NotDecorrelated("a subquery expression outside the WHERE's conjuncts")
        if isinstance(node, exp.Subquery) and not isinstance(node.parent, (exp.From, exp.Join)):
            raise NotDecorrelated("a subquery expression outside the WHERE's conjuncts")


def decorrelate(query: exp.Query) -> exp.Query:
    """``query`` with its WHERE subquery expressions as joins; raises ``NotDecorrelated``
    when one keeps its form (the query is then left to the strategies that read it whole)."""
    if not isinstance(query, exp.Select):
        raise NotDecorrelated("not a single SELECT")
    copy = query.copy()
    _decorrelate_select(copy, [0])
    return copy
