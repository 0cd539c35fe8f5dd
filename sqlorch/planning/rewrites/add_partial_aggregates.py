"""``add partial aggregates``: a GROUP BY of COUNT/SUM/MIN/MAX over its one appended input:
the appended rows aggregated per group and folded into the stored groups."""

from __future__ import annotations

from sqlglot import exp

from sqlorch.planning.key_match import null_safe_match
from sqlorch.planning.rewrites.model_statements import (
    ChangeSources,
    ModelContext,
)
from sqlorch.planning.rewrites.rename_relations import rename_relations
from sqlorch.planning.rewrites.substitute_occurrence import substitute_occurrence


def combine(kind: str, stored: exp.Expr, added: exp.Expr) -> exp.Expr:
    """The aggregate over stored and appended rows, from the two partial aggregates."""
    if kind == "count":
        return exp.Add(this=exp.func("coalesce", stored, exp.Literal.number(0)), expression=added)
    either = exp.Case(
        ifs=[
            exp.If(this=stored.is_(exp.null()), true=added.copy()),
            exp.If(this=added.is_(exp.null()), true=stored.copy()),
        ]
    )
    if kind == "sum":
        return either.else_(exp.Add(this=stored.copy(), expression=added.copy()))
    better = exp.LT if kind == "min" else exp.GT
    either.append("ifs", exp.If(this=better(this=added.copy(), expression=stored.copy()), true=added.copy()))
    return either.else_(stored.copy())


def partial_aggregate_rows(ctx: ModelContext, sources: ChangeSources) -> tuple[exp.Query, exp.Query]:
    """(affected keys, new rows): the appended rows aggregated per group, combined with the
    stored group where there is one."""
    keys = ctx.compiled.keys
    assert keys.inlined is not None and keys.key is not None and keys.distributive is not None
    partial, _ = substitute_occurrence(keys.inlined, 0, sources.is_changed, sources.changed, sources.everything)
    partial = rename_relations(partial, ctx.physical_of, ctx.default_schema)
    names = [s.alias_or_name.lower() for s in keys.inlined.selects]
    combined = (
        exp.select(
            *[
                exp.column(n, table="s", quoted=True)
                if n in keys.key
                else exp.alias_(
                    combine(
                        keys.distributive[n],
                        exp.column(n, table="t", quoted=True),
                        exp.column(n, table="s", quoted=True),
                    ),
                    n,
                    quoted=True,
                )
                for n in names
            ]
        )
        .from_(partial.subquery("s"))
        .join(
            ctx.physical.to_table(alias="t"),
            on=null_safe_match("s", "t", keys.key, any_types=True),
            join_type="LEFT",
        )
    )
    affected = exp.select(*[exp.column(n, quoted=True) for n in keys.key]).from_(partial.subquery("p"))
    return affected, combined
