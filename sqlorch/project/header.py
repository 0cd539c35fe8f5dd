"""The leading ``-- key: value`` comment block that configures a model.

The block keeps model files runnable SQL. Known keys are checked so a typo is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlorch.errors import ConfigError

MATERIALIZATIONS = ("table", "view", "incremental")
HEADER_KEYS = ("materialized", "tags", "unique_key", "description", "enabled", "audits", "audits_warn")
_LINE = re.compile(r"^\s*--\s*([A-Za-z_][\w]*)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class ModelConfig:
    """materialized: ``incremental`` (default; maintained exactly), ``table`` (always
    rebuilt in full) or ``view``. tags: comma separated, for ``--select tag:x``.
    unique_key: columns the output is unique on, verified at build. enabled: false hides
    the model from the project."""

    materialized: str = "incremental"
    tags: tuple[str, ...] = ()
    unique_key: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True
    explicit: frozenset[str] = field(default_factory=frozenset)
    audits: tuple[str, ...] = ()  # audit calls, e.g. "not_null(order_id)"; a failure fails the model
    audits_warn: tuple[str, ...] = ()  # the same, reported as warnings


def _split_list(value: str) -> tuple[str, ...]:
    value = value.strip().strip("[]")
    return tuple(part.strip().strip("'\"") for part in value.split(",") if part.strip())


def _split_calls(value: str) -> tuple[str, ...]:
    """``not_null(a), accepted_values(s, 'x, y')`` -> the calls: commas inside brackets
    or quotes do not split."""
    calls, depth, quote, start = [], 0, "", 0
    for index, char in enumerate(value):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            calls.append(value[start:index].strip())
            start = index + 1
    calls.append(value[start:].strip())
    return tuple(call for call in calls if call)


def parse_header(text: str, path: Path) -> ModelConfig:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not line.lstrip().startswith("--"):
            break
        match = _LINE.match(line)
        if not match:
            continue  # an ordinary comment
        key, value = match.group(1).lower(), match.group(2)
        if key not in HEADER_KEYS:
            raise ConfigError(
                f"unknown model setting '{key}'",
                path=path,
                line=number,
                col=line.index(match.group(1)) + 1,
                hint=f"known settings: {', '.join(HEADER_KEYS)}",
            )
        if key == "materialized" and value not in MATERIALIZATIONS:
            raise ConfigError(
                f"materialized must be one of {', '.join(MATERIALIZATIONS)}, not '{value}'",
                path=path,
                line=number,
                col=line.index(value) + 1,
            )
        values[key] = value
    return ModelConfig(
        materialized=values.get("materialized", "incremental"),
        tags=_split_list(values.get("tags", "")),
        unique_key=tuple(name.lower() for name in _split_list(values.get("unique_key", ""))),
        description=values.get("description", ""),
        enabled=values.get("enabled", "true").lower() not in ("false", "no", "0"),
        explicit=frozenset(values),
        audits=_split_calls(values.get("audits", "")),
        audits_warn=_split_calls(values.get("audits_warn", "")),
    )
