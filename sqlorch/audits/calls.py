"""Audit calls as written: ``not_null(order_id), row_count(min => 1)``, parsed with sqlglot.

A list of calls is split at top-level commas by sqlglot's tokenizer (``unique`` is a
keyword, so the whole list cannot be parsed as one SELECT list); each call's arguments
are parsed as the arguments of a function in the project's dialect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from sqlorch.errors import ConfigError


@dataclass(frozen=True)
class AuditCall:
    """One audit attached to a model or source: ``name(args, key => value)``."""

    name: str
    args: tuple[exp.Expr, ...]
    kwargs: dict[str, exp.Expr] = field(default_factory=dict)
    blocking: bool = True
    text: str = ""  # the call as written, for messages and run_results.json
    path: Path | None = None
    line: int | None = None
    col: int | None = None

    def error(self, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(f"audit {self.text}: {message}", path=self.path, line=self.line, col=self.col, hint=hint)


def _split_calls(text: str, dialect: str, path: Path | None, line: int, col: int) -> list[tuple[str, Token]]:
    """``(call text, its first token)`` per top-level comma-separated call."""
    try:
        tokens = sqlglot.Dialect.get_or_raise(dialect).tokenize(text)
    except TokenError as error:
        raise ConfigError(f"cannot read audit list: {error}", path=path, line=line, col=col) from None
    groups: list[list[Token]] = [[]]
    depth = 0
    for token in tokens:
        if depth == 0 and token.token_type == TokenType.COMMA:
            groups.append([])
            continue
        depth += {TokenType.L_PAREN: 1, TokenType.R_PAREN: -1}.get(token.token_type, 0)
        groups[-1].append(token)
    if any(not group for group in groups):
        raise ConfigError("empty audit in the list", path=path, line=line, col=col)
    return [(text[group[0].start : group[-1].end + 1], group[0]) for group in groups]


def parse_audit_calls(
    text: str, dialect: str, blocking: bool, path: Path | None = None, line: int = 1, col: int = 1
) -> list[AuditCall]:
    """Every call in a comma-separated list; ``line``/``col`` locate ``text`` in its file."""
    if not text.strip():
        return []
    calls = []
    for call_text, first in _split_calls(text, dialect, path, line, col):
        at_line = line + first.line - 1
        # sqlglot's token col is the column of its last character
        at_col = (col if first.line == 1 else 1) + first.col - len(first.text)
        name = first.text.lower()
        rest = call_text[len(first.text) :].strip()
        if not name.isidentifier() or not rest.startswith("(") or not rest.endswith(")"):
            raise ConfigError(
                f"'{call_text}' is not an audit call",
                path=path,
                line=at_line,
                col=at_col,
                hint="write name(arguments), e.g. not_null(order_id)",
            )
        try:
            parsed = sqlglot.parse_one(f"SELECT _sqlorch_audit{rest}", read=dialect)
        except (SqlglotParseError, TokenError) as error:
            message = str(error).splitlines()[0]
            raise ConfigError(
                f"cannot parse audit '{call_text}': {message}", path=path, line=at_line, col=at_col
            ) from None
        call = parsed.selects[0] if isinstance(parsed, exp.Select) and len(parsed.selects) == 1 else None
        if not isinstance(call, exp.Anonymous):
            raise ConfigError(f"cannot parse audit '{call_text}'", path=path, line=at_line, col=at_col)
        named = (exp.Kwarg, exp.PropertyEQ)
        args = tuple(a for a in call.expressions if not isinstance(a, named))
        kwargs = {a.this.name.lower(): a.expression for a in call.expressions if isinstance(a, named)}
        calls.append(AuditCall(name, args, kwargs, blocking, call_text, path, at_line, at_col))
    return calls
