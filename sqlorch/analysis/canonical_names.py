"""Identifiers rewritten to sqlorch's canonical names before a query is analysed.

sqlorch names every column and relation it knows (seed headers, declared source columns,
model outputs, warehouse catalogs) in lower case: a name the dialect treats as
case-insensitive is canonical in lower case, whatever case the dialect itself folds to.
Snowflake folds unquoted ``id`` to ``ID``; left to sqlglot, the query would then ask the
schema for ``ID`` where sqlorch knows ``id``. So the query's names are canonicalised here,
once, with the dialect's own rules, and quoted so that no later pass folds them again;
adapters map a quoted lower-case name back to the warehouse's own folding (Snowflake
renders ``"id"`` as ``"ID"``, the object an unquoted ``id`` names there).

Per identifier, by the dialect's normalization strategy:
- case-insensitive even when quoted (DuckDB, BigQuery, Spark): lower case;
- folding unquoted names (Postgres: lower, Snowflake: upper): an unquoted name in lower
  case; a quoted one too when it is written in the folded case (``"ID"`` in Snowflake is
  the object ``id`` names); any other quoted name is case-sensitive and kept;
- case-sensitive dialects: kept.
BigQuery's case-sensitive table names are lower-cased like every relation sqlorch knows.
"""

from __future__ import annotations

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect, NormalizationStrategy

_ALWAYS_INSENSITIVE = (NormalizationStrategy.CASE_INSENSITIVE, NormalizationStrategy.CASE_INSENSITIVE_UPPERCASE)


def _canonical(identifier: exp.Identifier, strategy: NormalizationStrategy) -> str | None:
    """The canonical name of a case-insensitive identifier; None for one to keep as written
    (case-sensitive, or quoted in lower case where the dialect folds to lower case)."""
    name = identifier.name
    if strategy in _ALWAYS_INSENSITIVE or (
        strategy is not NormalizationStrategy.CASE_SENSITIVE and not identifier.quoted
    ):
        return name.lower()
    if strategy is NormalizationStrategy.UPPERCASE and name == name.upper():
        return name.lower()
    return None


def canonical_names(expression: exp.Expr, dialect: Dialect) -> exp.Expr:
    """``expression`` (changed in place) with every case-insensitive identifier in its
    canonical lower case and quoted, as the dialect would resolve it."""
    strategy = dialect.normalization_strategy
    for node in expression.find_all(exp.Identifier):
        canonical = _canonical(node, strategy)
        if canonical is not None:
            node.set("this", canonical)
            node.set("quoted", True)
    return expression
