"""The built-in audits, each a function from a call and its subject to the query returning
the bad rows (no rows: the audit passes). Arguments are checked here too, so ``compile``
and ``build`` report the same mistakes."""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from sqlorch.audits.calls import AuditCall
from sqlorch.audits.subject import Subject

Builder = Callable[[AuditCall, Subject], exp.Select]


def column_name(call: AuditCall, arg: exp.Expr, subject: Subject) -> str:
    """A bare column argument, lower case, known to exist when the subject's columns are."""
    if not isinstance(arg, exp.Column) or arg.table:
        raise call.error(f"'{arg.sql()}' is not a column name")
    name = arg.name.lower()
    if subject.columns and name not in subject.columns:
        raise call.error(f"unknown column '{arg.name}'", hint=f"columns: {', '.join(subject.columns)}")
    return name


def columns_in(call: AuditCall, predicate: exp.Expr, subject: Subject, alias: str = "a") -> exp.Expr:
    """``predicate`` with its columns checked and pointed at the audited rows (quoted, lower case)."""
    predicate = predicate.copy()
    for column in list(predicate.find_all(exp.Column)):
        name = column_name(call, exp.column(column.name), subject)
        column.replace(exp.column(name, table=alias, quoted=True))
    return predicate


def _need_args(call: AuditCall, least: int, most: int | None = None) -> None:
    if len(call.args) < least or (most is not None and len(call.args) > most):
        wanted = f"{least}" if most == least else f"at least {least}" if most is None else f"{least} to {most}"
        raise call.error(f"takes {wanted} argument(s), got {len(call.args)}")


def not_null(call: AuditCall, subject: Subject) -> exp.Select:
    _need_args(call, 1)
    names = [column_name(call, arg, subject) for arg in call.args]
    return subject.select_rows().where(exp.or_(*[exp.column(n, table="a", quoted=True).is_(exp.null()) for n in names]))


def accepted_values(call: AuditCall, subject: Subject) -> exp.Select:
    """NULL is not checked (``not_null`` is), as in dbt."""
    _need_args(call, 2)
    name = column_name(call, call.args[0], subject)
    values = [arg.copy() for arg in call.args[1:]]
    if not all(isinstance(v, (exp.Literal, exp.Boolean, exp.Neg)) for v in values):
        raise call.error("accepted values must be literals")
    return subject.select_rows().where(exp.not_(exp.column(name, table="a", quoted=True).isin(*values)))


def expression(call: AuditCall, subject: Subject) -> exp.Select:
    """Rows where the predicate is false; NULL passes, as in dbt_utils' expression_is_true."""
    _need_args(call, 1, 1)
    return subject.select_rows().where(exp.not_(exp.paren(columns_in(call, call.args[0], subject))))


def unique(call: AuditCall, subject: Subject) -> exp.Select:
    """Values that repeat. In an incremental step: among the rows written, and between them
    and the stored rows that stay (only the stored rows holding a written value are read)."""
    _need_args(call, 1)
    names = [column_name(call, arg, subject) for arg in call.args]
    values: exp.Query = exp.select(*[exp.column(n, table="a", quoted=True) for n in names]).from_(
        subject.rows.to_table(alias="a")
    )
    if subject.rest is not None:
        kept = (
            exp.select(*[exp.column(n, table="s", quoted=True) for n in names])
            .from_(subject.rest.subquery("s"))
            .where(
                exp.Exists(
                    this=exp.select(exp.Literal.number(1))
                    .from_(subject.rows.to_table(alias="w"))
                    .where(
                        exp.and_(
                            *[
                                exp.column(n, table="w", quoted=True).eq(exp.column(n, table="s", quoted=True))
                                for n in names
                            ]
                        )
                    )
                )
            )
        )
        values = exp.union(values, kept, distinct=False)
    group = [exp.column(n, table="v", quoted=True) for n in names]
    return (
        exp.select(*group, exp.alias_(exp.func("count", exp.Star()), "copies", quoted=True))
        .from_(values.subquery("v"))
        .where(exp.and_(*[g.copy().is_(exp.null()).not_() for g in group]))
        .group_by(*group)
        .having(exp.func("count", exp.Star()) > 1)
    )


def relationships(call: AuditCall, subject: Subject) -> exp.Select:
    """Rows whose (non-NULL) value has no match in ``schema.table.column``."""
    _need_args(call, 2, 2)
    name = column_name(call, call.args[0], subject)
    parent = call.args[1]
    if not isinstance(parent, exp.Column) or not parent.table:
        raise call.error(f"'{parent.sql()}' must name a column of another relation, e.g. staging.customers.id")
    relation = subject.relation_of(exp.Table(this=parent.args["table"].copy(), db=parent.args.get("db")))
    child = exp.column(name, table="a", quoted=True)
    match = (
        exp.select(exp.Literal.number(1))
        .from_(relation.to_table(alias="p"))
        .where(exp.column(parent.name.lower(), table="p", quoted=True).eq(child))
    )
    return subject.select_rows().where(exp.and_(child.copy().is_(exp.null()).not_(), exp.not_(exp.Exists(this=match))))


def _bound(call: AuditCall, key: str) -> exp.Expr | None:
    value = call.kwargs.get(key)
    if value is not None and not (isinstance(value, exp.Literal) and value.is_int):
        raise call.error(f"{key} must be a whole number")
    return value


def row_count(call: AuditCall, subject: Subject) -> exp.Select:
    """One row holding the count when it is outside ``min => m, max => n``."""
    unknown = set(call.kwargs) - {"min", "max"}
    if call.args or unknown or not call.kwargs:
        raise call.error("takes min => m and/or max => n", hint="e.g. row_count(min => 1)")
    low, high = _bound(call, "min"), _bound(call, "max")

    def count(query: exp.Query) -> exp.Expr:
        return exp.Subquery(this=exp.select(exp.func("count", exp.Star())).from_(query.subquery("c")))

    total = count(subject.select_rows())
    if subject.rest is not None:
        total = exp.Add(this=total, expression=count(subject.rest))
    n = exp.column("row_count", table="n", quoted=True)
    outside: list[exp.Expr] = [exp.LT(this=n, expression=low.copy())] if low is not None else []
    outside += [exp.GT(this=n.copy(), expression=high.copy())] if high is not None else []
    return (
        exp.select(n.copy())
        .from_(exp.select(exp.alias_(total, "row_count", quoted=True)).subquery("n"))
        .where(exp.or_(*outside))
    )


BUILTINS: dict[str, Builder] = {
    "not_null": not_null,
    "unique": unique,
    "accepted_values": accepted_values,
    "relationships": relationships,
    "expression": expression,
    "row_count": row_count,
}
