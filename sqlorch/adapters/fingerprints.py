"""An order-independent table fingerprint built as a sqlglot expression.

Row count plus a sum of per-row hashes: equal multisets give equal fingerprints in any
row order. Each dialect renders the hash function its own way; adapters whose warehouse
lacks one substitute theirs.
"""

from __future__ import annotations

from sqlglot import exp

from sqlorch.refs import TableRef


def row_hash(columns: list[str] | None, table_alias: str = "t") -> exp.Expr:
    """A 64-bit hash of one row (all columns when ``columns`` is None)."""
    if columns:
        parts: list[exp.Expr] = [exp.column(c, table=table_alias, quoted=True) for c in columns]
        packed: exp.Expr = exp.func("row", *parts) if len(parts) > 1 else parts[0]
    else:
        packed = exp.column(table_alias, quoted=True)
    return exp.func("hash", packed)


def fingerprint_query(table: TableRef, columns: list[str] | None = None) -> exp.Select:
    hashed = exp.cast(row_hash(columns), "HUGEINT")
    return exp.select(
        exp.func("count", exp.Star()),
        exp.func("coalesce", exp.func("sum", hashed), exp.Literal.number(0)),
    ).from_(table.to_table(alias="t"))
