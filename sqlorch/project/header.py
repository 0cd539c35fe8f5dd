"""The leading ``-- key: value`` comment block that configures a model.

The block keeps model files runnable SQL. Known keys are checked so a typo is an error,
not a silently ignored setting.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlorch.errors import ConfigError

MATERIALIZATIONS = ("table", "view", "incremental")
HEADER_KEYS = ("materialized", "tags", "unique_key", "description", "enabled", "audits", "audits_warn")
_LINE = re.compile(r"^\s*--\s*([A-Za-z_][\w]*)\s*:\s*(.*?)\s*$")


@dataclass(frozen=True)
class HeaderValue:
    """A setting's raw text and where it starts, for settings parsed later (audit calls)
    whose errors must point into the header line."""

    text: str
    line: int
    col: int


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
    audits: HeaderValue | None = None  # blocking audit calls, parsed by sqlorch.audits
    audits_warn: HeaderValue | None = None  # audit calls that only warn
    explicit: frozenset[str] = field(default_factory=frozenset)


def _split_list(value: str) -> tuple[str, ...]:
    value = value.strip().strip("[]")
    return tuple(part.strip().strip("'\"") for part in value.split(",") if part.strip())


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, HEADER_KEYS, n=1)
    return f"did you mean '{close[0]}'? " if close else ""


def parse_header(text: str, path: Path) -> ModelConfig:
    values: dict[str, str] = {}
    positions: dict[str, HeaderValue] = {}
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
                hint=_did_you_mean(key) + f"known settings: {', '.join(HEADER_KEYS)}",
            )
        if key == "materialized" and value not in MATERIALIZATIONS:
            raise ConfigError(
                f"materialized must be one of {', '.join(MATERIALIZATIONS)}, not '{value}'",
                path=path,
                line=number,
                col=line.index(value) + 1,
            )
        values[key] = value
        positions[key] = HeaderValue(value, number, match.start(2) + 1)
    return ModelConfig(
        materialized=values.get("materialized", "incremental"),
        tags=_split_list(values.get("tags", "")),
        unique_key=tuple(name.lower() for name in _split_list(values.get("unique_key", ""))),
        description=values.get("description", ""),
        enabled=values.get("enabled", "true").lower() not in ("false", "no", "0"),
        audits=positions.get("audits"),
        audits_warn=positions.get("audits_warn"),
        explicit=frozenset(values),
    )
