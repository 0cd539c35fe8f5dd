"""Model SQL text to one sqlglot query, with errors that point at the file."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import TokenError

from sqlorch.errors import ParseError
from sqlorch.project.read_only import check_read_only, describe, locate

E = TypeVar("E", bound=exp.Expr)


def _start_col(error: dict) -> int | None:
    """sqlglot reports the column where the offending token ends; point at its start."""
    col, highlight = error.get("col"), error.get("highlight") or ""
    if isinstance(col, int) and highlight and "\n" not in highlight:
        return max(1, col - len(highlight) + 1)
    return col


def parse_model_sql(sql: str, dialect: str, path: Path) -> exp.Query:
    """The one parse every model goes through (load, compile, plan, build, error
    positions), so none of them ever holds a tree that is not a read-only query."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except SqlglotParseError as error:
        first = error.errors[0] if error.errors else {}
        description = str(first.get("description", error)).split(". Line")[0]
        if " <Token" in description:  # name the offending text, not sqlglot's token repr
            description = description.split(" <Token")[0] + f" '{first.get('highlight', '')}'"
        raise ParseError(
            f"syntax error: {description}",
            path=path,
            line=first.get("line"),
            col=_start_col(first),
        ) from None
    except TokenError as error:
        raise ParseError(f"syntax error: {error}", path=path) from None
    if len(statements) != 1:
        line, col = locate(statements[1], sql, dialect) if len(statements) > 1 else (1, 1)
        raise ParseError(
            f"a model must be exactly one SELECT statement, found {len(statements)} statements",
            path=path,
            line=line,
            col=col,
        )
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        line, col = locate(statement, sql, dialect)
        raise ParseError(
            f"a model must be a SELECT query, found {describe(statement)}",
            path=path,
            line=line,
            col=col,
        )
    check_read_only(statement, sql, dialect, path)
    return statement


def strip_positions(tree: E) -> E:
    """Drop the token positions sqlglot keeps on each node, in place.

    Every copy of a tree deep-copies those position dicts in plain Python, which made each
    copy about three times slower; compile copies every model several times. Errors that
    need a line and column parse the SQL again (``Model.positioned``).
    """
    for node in tree.walk():
        node._meta = None
    return tree
