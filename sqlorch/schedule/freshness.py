"""Freshness declarations: durations (``15m``), a model's target, a source's verdict.

A model's target is the most it may lag its sources: seconds, ``downstream`` (as fresh as
its freshest consumer needs, as Snowflake's ``TARGET_LAG = DOWNSTREAM``), or none: with no
target and no cron the model is eager, built at the next tick after a change.
"""

from __future__ import annotations

import re
from typing import Literal

DOWNSTREAM: Literal["downstream"] = "downstream"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.IGNORECASE)

Freshness = float | Literal["downstream"]  # target seconds, or downstream


def parse_duration(text: str) -> float:
    """``30s``, ``15m``, ``2h``, ``1d`` (or several, ``1h30m``) as seconds; ValueError with
    the message the caller shows at the value's position."""
    value = text.strip()
    parts = _DURATION.findall(value)
    if not value or not parts or "".join(f"{n}{u}" for n, u in parts).lower() != value.replace(" ", "").lower():
        raise ValueError(f"'{text}' is not a duration: write a number and a unit (s, m, h or d), e.g. 15m")
    seconds = sum(float(number) * UNITS[unit.lower()] for number, unit in parts)
    if seconds <= 0:
        raise ValueError(f"'{text}' must be longer than zero")
    return seconds


def parse_freshness(text: str) -> Freshness:
    """A model's ``-- freshness:`` value: a duration or ``downstream``."""
    if text.strip().lower() == DOWNSTREAM:
        return DOWNSTREAM
    try:
        return parse_duration(text)
    except ValueError:
        raise ValueError(
            f"freshness must be a duration such as 15m (units s, m, h, d) or 'downstream', not '{text}'"
        ) from None


def format_duration(seconds: float) -> str:
    """The shortest exact spelling in the declaration's units, for messages."""
    for unit, size in sorted(UNITS.items(), key=lambda item: -item[1]):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def source_verdict(age: float | None, warn_after: float | None, error_after: float | None) -> str | None:
    """``ok``, ``warn`` or ``error`` for a source whose newest data is ``age`` seconds old
    (None: it holds no data, which is as late as a source can be); None when the source
    declares no freshness."""
    if warn_after is None and error_after is None:
        return None
    late = float("inf") if age is None else age
    if error_after is not None and late > error_after:
        return "error"
    if warn_after is not None and late > warn_after:
        return "warn"
    return "ok"
