"""``schema.yml`` tests as sqlorch audit calls (the header syntax of the data quality
issue: ``not_null(col)``, ``unique(col)``, ``accepted_values(col, 'a', 'b')``,
``relationships(col, schema.table.col)``). ``severity: warn`` makes a warning audit. A test
that cannot be translated (a package's generic test, a ``where:`` filter) is returned by
name as skipped, so plan and build can say so."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

_BUILTIN = ("not_null", "unique", "accepted_values", "relationships")
# Test settings a translation cannot honour: the test is skipped rather than run wrongly.
_UNSUPPORTED_CONFIG = ("where", "limit", "fail_calc", "warn_if", "error_if", "store_failures")
_RELATION = re.compile(r"""^\s*(ref|source)\(\s*['"]([^'"]+)['"]\s*(?:,\s*['"]([^'"]+)['"]\s*)?\)\s*$""")


@dataclass
class Audits:
    error: list[str] = field(default_factory=list)
    warn: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _name_and_args(test: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(test, str):
        return test, {}
    if isinstance(test, dict) and len(test) == 1:
        ((name, args),) = test.items()
        return str(name), dict(args or {})
    if isinstance(test, dict) and "test_name" in test:
        return str(test["test_name"]), {k: v for k, v in test.items() if k not in ("test_name", "name")}
    return str(test), {}


def _literal(value: Any, quote: bool) -> str:
    if not quote or isinstance(value, bool | int | float):
        return str(value)
    return exp.Literal.string(str(value)).sql()


def translate_test(
    test: Any, column: str | None, relation_of: Callable[[str, str, str | None], str | None], audits: Audits
) -> None:
    """Add one test on ``column`` (None: a test on the whole model) to ``audits``."""
    name, raw = _name_and_args(test)
    config = dict(raw.pop("config", None) or {})
    arguments = raw.pop("arguments", None)  # dbt 1.10+ nests a test's arguments
    args = {**arguments, **raw} if isinstance(arguments, dict) else raw
    for key in ("severity", *_UNSUPPORTED_CONFIG):  # older dbt puts configs beside the arguments
        if key in args:
            config[key] = args.pop(key)
    label = f"{name}({column})" if column else name
    if name not in _BUILTIN or column is None or any(key in config for key in _UNSUPPORTED_CONFIG):
        audits.skipped.append(label)
        return
    quoted = exp.to_identifier(column).sql()
    if name in ("not_null", "unique"):
        call = f"{name}({quoted})"
    elif name == "accepted_values":
        values = args.get("values") or []
        quote = bool(args.get("quote", True))
        call = f"accepted_values({quoted}, {', '.join(_literal(v, quote) for v in values)})"
    else:
        match = _RELATION.match(str(args.get("to", "")))
        target = relation_of(match.group(1), match.group(2), match.group(3)) if match else None
        if target is None or not args.get("field"):
            audits.skipped.append(label)
            return
        call = f"relationships({quoted}, {target}.{exp.to_identifier(str(args['field'])).sql()})"
    severity = str(config.get("severity", "error")).lower()
    (audits.warn if severity == "warn" else audits.error).append(call)


def translate_tests(
    columns: tuple[dict[str, Any], ...],
    node_tests: tuple[Any, ...],
    relation_of: Callable[[str, str, str | None], str | None],
) -> Audits:
    audits = Audits()
    for column in columns:
        for test in column.get("data_tests") or column.get("tests") or ():
            translate_test(test, str(column["name"]), relation_of, audits)
    for test in node_tests:
        translate_test(test, None, relation_of, audits)
    return audits
