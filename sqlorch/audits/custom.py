"""Custom audits: ``audits/<name>.sql``, a query returning the bad rows of the relation it
is attached to.

The file names that relation ``this`` and takes arguments as placeholders, e.g.
``SELECT * FROM this WHERE :column < :floor`` used as ``positive(column => amount, floor => 0)``
(positional arguments fill the placeholders in the order they first appear). Other
tables it reads are resolved like table names in model SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import TokenError

from sqlorch.audits.builtins import BUILTINS, column_name
from sqlorch.audits.calls import AuditCall
from sqlorch.audits.subject import Subject
from sqlorch.config import read_utf8
from sqlorch.errors import ConfigError

THIS = "this"


@dataclass(frozen=True)
class CustomAudit:
    name: str
    path: Path
    query: exp.Query

    @property
    def parameters(self) -> list[str]:
        seen: list[str] = []
        for placeholder in self.query.find_all(exp.Placeholder):
            if placeholder.name and placeholder.name.lower() not in seen:
                seen.append(placeholder.name.lower())
        return seen


def load_custom_audits(root: Path, dialect: str) -> dict[str, CustomAudit]:
    audits: dict[str, CustomAudit] = {}
    for path in sorted((root / "audits").glob("*.sql")):
        name = path.stem.lower()
        if name in BUILTINS:
            raise ConfigError(f"custom audit '{name}' has the name of a built-in audit", path=path, line=1, col=1)
        try:
            query = sqlglot.parse_one(read_utf8(path), read=dialect)
        except (SqlglotParseError, TokenError) as error:
            line, col = _position(error)
            raise ConfigError(f"cannot parse custom audit: {error}", path=path, line=line, col=col) from None
        if not isinstance(query, exp.Query):
            raise ConfigError("a custom audit must be one SELECT returning the bad rows", path=path, line=1, col=1)
        audits[name] = CustomAudit(name, path, query)
    return audits


def _position(error: Exception) -> tuple[int | None, int | None]:
    details = getattr(error, "errors", None) or [{}]
    return details[0].get("line"), details[0].get("col")


def _argument(call: AuditCall, value: exp.Expr, subject: Subject) -> exp.Expr:
    if isinstance(value, exp.Column):
        return exp.column(column_name(call, value, subject), quoted=True)
    return value.copy()


def build_custom(call: AuditCall, audit: CustomAudit, subject: Subject) -> exp.Select:
    parameters = audit.parameters
    bound = dict(zip(parameters, call.args, strict=False))
    if len(call.args) > len(parameters):
        raise call.error(f"takes {len(parameters)} argument(s) ({', '.join(parameters) or 'none'})")
    bound.update(call.kwargs)
    missing = [p for p in parameters if p not in bound]
    unknown = [k for k in call.kwargs if k not in parameters]
    if missing or unknown:
        raise call.error(
            f"missing argument(s) {', '.join(missing)}" if missing else f"unknown argument(s) {', '.join(unknown)}",
            hint=f"{audit.path.name} takes {', '.join(parameters) or 'no arguments'}",
        )
    values = {name: _argument(call, value, subject) for name, value in bound.items()}
    ctes = {cte.alias_or_name.lower() for cte in audit.query.find_all(exp.CTE)}

    def substitute(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and node.name.lower() in values:
            return values[node.name.lower()].copy()
        if isinstance(node, exp.Table) and not node.db and isinstance(node.this, exp.Identifier):
            if node.name.lower() == THIS:
                return subject.whole().subquery(node.alias or THIS)
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier) and node.name.lower() not in ctes:
            return subject.relation_of(node).to_table(alias=node.alias or None)
        return node

    query = audit.query.transform(substitute)
    assert isinstance(query, exp.Query)
    return exp.select(exp.Star()).from_(query.subquery("custom"))
