"""The MERGE that replaces affected keys when the key is unique in the output.

    MERGE INTO model t
    USING (affected keys k LEFT JOIN recomputed rows r ON k.key IS NOT DISTINCT FROM r.key) s
    ON t.key IS NOT DISTINCT FROM s.key
    WHEN MATCHED AND <no recomputed row> THEN DELETE
    WHEN MATCHED THEN UPDATE SET <non-key columns>
    WHEN NOT MATCHED AND <recomputed row> THEN INSERT ...

Keys that are not unique (a window partition holds many rows) are replaced with DELETE
and INSERT in one transaction instead; the result is the same.
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.planning.key_match import null_safe_match
from sqlorch.refs import TableRef

PRESENT = "_sqlorch_present"


def _key_alias(name: str) -> str:
    return f"_sqlorch_key_{name}"


def mark_present(query: exp.Query) -> exp.Select:
    """The recomputed rows plus a never-NULL marker, to tell "no row" apart after a LEFT JOIN."""
    return exp.select(exp.Star(), exp.alias_(exp.true(), PRESENT, quoted=True)).from_(query.subquery("r"))


def build_key_merge(target: TableRef, rows: TableRef, keys: TableRef, key: list[str], columns: list[str]) -> exp.Merge:
    source = (
        exp.select(
            *[exp.alias_(exp.column(name, table="k", quoted=True), _key_alias(name), quoted=True) for name in key],
            *[exp.column(name, table="r", quoted=True) for name in columns],
            exp.column(PRESENT, table="r", quoted=True),
        )
        .from_(keys.to_table(alias="k"))
        .join(
            rows.to_table(alias="r"),
            on=null_safe_match("k", "r", key, any_types=True),
            join_type="LEFT",
        )
    )
    on = null_safe_match("t", "s", key, [_key_alias(n) for n in key], any_types=True)
    present = exp.column(PRESENT, table="s", quoted=True)
    whens = [exp.When(matched=True, source=False, condition=present.copy().is_(exp.null()), then=exp.var("DELETE"))]
    updated = [name for name in columns if name not in key]
    if updated:
        whens.append(
            exp.When(
                matched=True,
                source=False,
                then=exp.Update(
                    expressions=[
                        exp.EQ(this=exp.column(n, quoted=True), expression=exp.column(n, table="s", quoted=True))
                        for n in updated
                    ]
                ),
            )
        )
    whens.append(
        exp.When(
            matched=False,
            source=False,
            condition=exp.not_(present.copy().is_(exp.null())),
            then=exp.Insert(
                this=exp.Tuple(expressions=[exp.column(n, quoted=True) for n in columns]),
                expression=exp.Tuple(expressions=[exp.column(n, table="s", quoted=True) for n in columns]),
            ),
        )
    )
    return exp.Merge(
        this=target.to_table(alias="t"),
        using=source.subquery("s"),
        on=on,
        whens=exp.Whens(expressions=whens),
    )
