"""Five-field cron schedules (``0 6 * * *``) evaluated in a time zone, DST included.

Written here rather than taken from a library because the daylight-saving rules are the
point and must be ours to state and test (Vixie cron's, which users of cron expect):

- a local time skipped by a spring-forward change fires once, at the end of the gap
  (``30 2 * * *`` on the night Berlin goes from 02:00 to 03:00 fires at 03:00);
- a local time repeated by a fall-back change fires once, at its first occurrence, unless
  the schedule names every hour (``*/15 * * * *``), which keeps firing through both
  passes of the repeated hour, as it does every other hour.

Fields: minute, hour, day of month, month (1-12 or jan-dec), day of week (0-7, 0 and 7
are Sunday, or sun-sat); each a ``*``, a value, a range ``a-b``, a step ``*/n`` or
``a-b/n``, or a comma-separated list of those. When both day fields are restricted, a day
matching either one matches (cron's rule). ``@hourly``, ``@daily``, ``@weekly``,
``@monthly`` and ``@yearly`` stand for their usual expressions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_SEARCH_DAYS = 366 * 8  # a 29 February that is also a Monday comes round within 28 years; 8 covers any leap day


class CronSyntaxError(ValueError):
    """A malformed expression; ``offset`` is where in the expression the fault starts."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class CronSchedule:
    text: str
    zone: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday, as date.weekday()
    days_restricted: bool
    weekdays_restricted: bool

    @property
    def every_hour(self) -> bool:
        return len(self.hours) == 24

    def next_after(self, after: datetime) -> datetime | None:
        """The first firing strictly after ``after`` (an aware datetime), in UTC; None if
        the schedule never fires (``0 0 30 2 *``)."""
        tz = ZoneInfo(self.zone)
        day = after.astimezone(tz).date() - timedelta(days=1)  # a repeated hour may belong to the day before
        for _ in range(_SEARCH_DAYS):
            if self._matches(day):
                for instant in self._instants(day, tz):
                    if instant > after:
                        return instant
            day += timedelta(days=1)
        return None

    def _matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, day.weekday() in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def _instants(self, day: date, tz: ZoneInfo) -> list[datetime]:
        found: set[datetime] = set()
        for hour in self.hours:
            for minute in self.minutes:
                found.update(_resolve(datetime.combine(day, time(hour, minute)), tz, self.every_hour))
        return sorted(found)


def _resolve(local: datetime, tz: ZoneInfo, both_folds: bool) -> list[datetime]:
    """The UTC instants at which a local wall-clock time fires (see the module docstring)."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) != local:  # skipped: fire when the gap ends
        end = local
        while end.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != end:
            end = (end + timedelta(minutes=1)).replace(second=0)
        return [end.replace(tzinfo=tz).astimezone(UTC)]
    second = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    return [first, second] if both_folds and second != first else [first]


def parse_cron(text: str, zone: str = "UTC") -> CronSchedule:
    """Parse a five-field expression; CronSyntaxError says which field is wrong and where."""
    expression = MACROS.get(text.strip().lower(), text)
    fields, offsets, position = [], [], 0
    for part in expression.split():
        position = expression.index(part, position)
        fields.append(part)
        offsets.append(position if expression is text else 0)
        position += len(part)
    if len(fields) != 5:
        raise CronSyntaxError(
            f"a cron schedule has 5 fields (minute hour day-of-month month day-of-week), '{text}' has {len(fields)}"
        )
    values = [_field(part, offset, *spec) for part, offset, spec in zip(fields, offsets, _FIELDS, strict=True)]
    weekdays = frozenset((day - 1) % 7 for day in values[4])  # cron 0/7 = Sunday -> 6, 1 = Monday -> 0
    return CronSchedule(
        text=text,
        zone=zone,
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        days_restricted=fields[2] != "*",
        weekdays_restricted=fields[4] != "*",
    )


def _field(text: str, offset: int, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    position = offset
    for item in text.split(","):
        values |= _item(item, position, name, low, high, names)
        position += len(item) + 1
    return values


def _item(text: str, offset: int, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    span, _, step_text = text.partition("/")
    step = 1
    if step_text:
        step = _number(step_text, offset + len(span) + 1, name, 1, high - low + 1, ())
    if span == "*":
        start, stop = low, high
    elif "-" in span:
        first, _, last = span.partition("-")
        start = _number(first, offset, name, low, high, names)
        stop = _number(last, offset + len(first) + 1, name, low, high, names)
        if stop < start:
            raise CronSyntaxError(f"{name} range '{span}' runs backwards", offset)
    else:
        start = _number(span, offset, name, low, high, names)
        stop = high if step_text else start
    return set(range(start, stop + 1, step))


def _number(text: str, offset: int, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + (1 if name == "month" else 0)
    if not text.isdigit():
        spelled = f" or {names[0]}-{names[-1]}" if names else ""
        raise CronSyntaxError(f"{name} '{text}' is not a number{spelled}", offset)
    value = int(text)
    if not low <= value <= high:
        raise CronSyntaxError(f"{name} {value} is out of range {low}-{high}", offset)
    return value
