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
from sqlorch.schedule.cron import CronSchedule, CronSyntaxError, parse_cron
from sqlorch.schedule.freshness import DOWNSTREAM, Freshness, parse_freshness

MATERIALIZATIONS = ("table", "view", "incremental")
HEADER_KEYS = (
    "materialized", "tags", "unique_key", "description", "enabled", "audits", "audits_warn",
    "freshness", "cron", "cron_tz",
)  # fmt: skip
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
    the model from the project. freshness, cron (with cron_tz): when ``sqlorch run``
    builds it (``sqlorch.schedule.due``)."""

    materialized: str = "incremental"
    tags: tuple[str, ...] = ()
    unique_key: tuple[str, ...] = ()
    description: str = ""
    enabled: bool = True
    audits: HeaderValue | None = None  # blocking audit calls, parsed by sqlorch.audits
    audits_warn: HeaderValue | None = None  # audit calls that only warn
    explicit: frozenset[str] = field(default_factory=frozenset)
    freshness: Freshness | None = None  # seconds or "downstream"; None: sqlorch.yml's default_freshness
    cron: CronSchedule | None = None


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
    freshness, cron = _schedule(positions, path)
    return ModelConfig(
        materialized=values.get("materialized", "incremental"),
        tags=_split_list(values.get("tags", "")),
        unique_key=tuple(name.lower() for name in _split_list(values.get("unique_key", ""))),
        description=values.get("description", ""),
        enabled=values.get("enabled", "true").lower() not in ("false", "no", "0"),
        audits=positions.get("audits"),
        audits_warn=positions.get("audits_warn"),
        explicit=frozenset(values),
        freshness=freshness,
        cron=cron,
    )


def _schedule(positions: dict[str, HeaderValue], path: Path) -> tuple[Freshness | None, CronSchedule | None]:
    """``freshness``, ``cron`` and ``cron_tz``, checked here so a bad value is an error at
    its own column in ``compile``, not a surprise in ``run``."""
    freshness = None
    if "freshness" in positions:
        value = positions["freshness"]
        try:
            freshness = parse_freshness(value.text)
        except ValueError as error:
            close = difflib.get_close_matches(value.text.lower(), [DOWNSTREAM], n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise ConfigError(str(error), path=path, line=value.line, col=value.col, hint=hint) from None
    zone = positions.get("cron_tz")
    if zone is not None and "cron" not in positions:
        raise ConfigError(
            "cron_tz is set but there is no cron", path=path, line=zone.line, col=zone.col,
            hint="add '-- cron: 0 6 * * *' (or drop cron_tz)",
        )  # fmt: skip
    if zone is not None:
        _check_zone(zone, path)
    if "cron" not in positions:
        return freshness, None
    value = positions["cron"]
    try:
        return freshness, parse_cron(value.text, zone.text if zone else "UTC")
    except CronSyntaxError as error:
        raise ConfigError(str(error), path=path, line=value.line, col=value.col + error.offset) from None


def _check_zone(zone: HeaderValue, path: Path) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

    try:
        ZoneInfo(zone.text)
    except (ZoneInfoNotFoundError, ValueError):
        zones = sorted(available_timezones())
        close = difflib.get_close_matches(zone.text, zones, n=1) or difflib.get_close_matches(
            zone.text.lower(), [z.lower() for z in zones], n=1
        )
        raise ConfigError(
            f"unknown time zone '{zone.text}'", path=path, line=zone.line, col=zone.col,
            hint=(f"did you mean '{_spelled(close[0], zones)}'? " if close else "")
            + "cron_tz takes an IANA zone name, e.g. Europe/Berlin or UTC",
        ) from None  # fmt: skip


def _spelled(name: str, zones: list[str]) -> str:
    return next((zone for zone in zones if zone.lower() == name.lower()), name)
