"""Ranges and buckets in any IANA time zone, computed from the zone database (not SQL).

A bucket is the set of instants sharing one local hour, day, ISO week or month. Its start is
the first instant of it: a day that begins at 01:00 because of a DST jump starts at 01:00; the
hour repeated when clocks fall back is two buckets (the same wall-clock hour, two offsets).
Every UTC offset in use since 1980 is a multiple of 15 minutes, so every bucket start lies on
the 15-minute UTC grid; ranges before 2000 are refused, and `aligned()` lets callers verify it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from core.errors import FieldIssue, ValidationFailed
from core.validation import time_zones

Interval = Literal["hour", "day", "week", "month"]
Period = Literal[
    "today",
    "yesterday",
    "last_24_hours",
    "last_7_days",
    "last_30_days",
    "last_90_days",
    "last_365_days",
    "this_week",
    "last_week",
    "this_month",
    "last_month",
    "this_year",
    "last_year",
]
UTC = dt.UTC
STEP = dt.timedelta(minutes=15)
EPOCH = dt.datetime(2000, 1, 1, tzinfo=UTC)
MAX_BUCKETS = 2000
MAX_SPAN = dt.timedelta(days=3 * 366)
_NOMINAL = {
    "hour": dt.timedelta(hours=1),
    "day": dt.timedelta(days=1),
    "week": dt.timedelta(days=7),
    "month": dt.timedelta(days=28),
}
# No zone has moved its clocks by more than this at once since 1980 (double summer time: 2 h).
_SLACK = dt.timedelta(hours=3)


def zone(name: str) -> ZoneInfo:
    """An IANA zone, or a 422 that says what a valid name looks like."""
    try:
        if name in time_zones():
            return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    raise ValidationFailed(
        f"unknown time zone {name!r}",
        code="invalid_time_zone",
        hint="use an IANA name such as `Europe/Paris`, `America/New_York` or `UTC`",
        errors=[FieldIssue("time_zone", "not an IANA time zone name")],
    )


@dataclass(frozen=True)
class Range:
    """[start, end) as instants, with the zone it was expressed in."""

    start: dt.datetime
    end: dt.datetime
    tz: ZoneInfo
    period: str | None = None

    @property
    def span(self) -> dt.timedelta:
        return self.end - self.start

    def previous(self) -> Range:
        """The period of equal length just before this one."""
        return Range(self.start - self.span, self.start, self.tz, None)

    def local(self, instant: dt.datetime) -> str:
        return instant.astimezone(self.tz).isoformat()


def floor_to(t: dt.datetime, minutes: int = 15) -> dt.datetime:
    """The start of the `minutes`-long UTC slot holding `t` (slots counted from 2000-01-01)."""
    step = dt.timedelta(minutes=minutes)
    return EPOCH + ((t - EPOCH) // step) * step


def ceil_to(t: dt.datetime, minutes: int = 15) -> dt.datetime:
    f = floor_to(t, minutes)
    return f if f == t else f + dt.timedelta(minutes=minutes)


def floor15(t: dt.datetime) -> dt.datetime:
    return floor_to(t, 15)


def ceil15(t: dt.datetime) -> dt.datetime:
    return ceil_to(t, 15)


def aligned(t: dt.datetime, minutes: int = 15) -> bool:
    return floor_to(t, minutes) == t


def _first_instant(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    """The first instant whose local date is `day` (local midnight, unless a DST jump skips it)."""
    guess = dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(UTC)
    t = floor15(guess - _SLACK)
    while t.astimezone(tz).date() < day:
        t += STEP
    return t


def _parse_instant(raw: str, tz: ZoneInfo, field: str, *, end: bool) -> dt.datetime:
    """A date (local midnight; an end date includes that whole day) or a datetime (with an
    offset, or local to the zone when naive)."""
    value = raw.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = dt.date.fromisoformat(value)
            return _first_instant(day + dt.timedelta(days=1) if end else day, tz)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"{field} is not a date or a date-time: {raw!r}",
            code="invalid_range",
            hint="use ISO 8601: `2026-03-01` (a local date) or `2026-03-01T09:00:00+01:00`",
            errors=[FieldIssue(field, "not ISO 8601")],
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def resolve_range(
    tz: ZoneInfo,
    *,
    period: str | None,
    start: str | None,
    end: str | None,
    now: dt.datetime,
    default: str = "last_30_days",
) -> Range:
    """A named period in the zone's calendar, or `start`/`end` (either may be left out: `end`
    defaults to now, `start` to the default period's length before `end`); never both."""
    if period is not None and (start or end):
        # Either one would be dropped or bent to the other: say so rather than guess.
        given = [f for f, v in (("start", start), ("end", end)) if v]
        raise ValidationFailed(
            f"`period` cannot be combined with {' or '.join(f'`{f}`' for f in given)}",
            code="invalid_range",
            hint="send either a `period` or `start`/`end`, not both",
            errors=[FieldIssue("period", f"given with {' and '.join(given)}")],
        )
    if start is None and end is None:
        name = period or default
        s, e = _period(name, tz, now)
        rng = Range(s, e, tz, name)
    else:
        e = _parse_instant(end, tz, "end", end=True) if end else now
        if start:
            s = _parse_instant(start, tz, "start", end=False)
        else:
            length = _period(default, tz, now)
            s = e - (length[1] - length[0])
        rng = Range(s, e, tz, None)
    problems = _range_problems(rng, now)
    if problems:
        raise ValidationFailed(
            "; ".join(p for _, p in problems),
            code="invalid_range",
            hint="choose an end date after the start date, within three years of it, or a named"
            " period such as last_30_days",
            errors=[FieldIssue(f, p) for f, p in problems],
        )
    return rng


def _range_problems(rng: Range, now: dt.datetime) -> list[tuple[str, str]]:
    """What is wrong with a range, each with the field to change. An end before the start is
    the one thing said then: the other bounds read as nonsense next to it."""
    if rng.end <= rng.start:
        return [("end", "the end date must be after the start date")]
    problems = []
    if rng.start < EPOCH:
        problems.append(("start", "the start date must be in 2000 or later"))
    if rng.end > now + dt.timedelta(days=366):
        problems.append(("end", "the end date must be at most a year from now"))
    if rng.span > MAX_SPAN:
        problems.append(("start", "the range may cover at most three years"))
    return problems


def _period(name: str, tz: ZoneInfo, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    today = now.astimezone(tz).date()
    day = dt.timedelta(days=1)
    monday = today - dt.timedelta(days=today.weekday())
    month = today.replace(day=1)
    fixed = {
        "last_24_hours": dt.timedelta(hours=24),
        "last_7_days": 7 * day,
        "last_30_days": 30 * day,
        "last_90_days": 90 * day,
        "last_365_days": 365 * day,
    }
    if name in fixed:
        return now - fixed[name], now
    first = _first_instant
    calendar = {
        "today": (today, today + day),
        "yesterday": (today - day, today),
        "this_week": (monday, monday + 7 * day),
        "last_week": (monday - 7 * day, monday),
        "this_month": (month, month + relativedelta(months=1)),
        "last_month": (month - relativedelta(months=1), month),
        "this_year": (today.replace(month=1, day=1), today.replace(year=today.year + 1, month=1, day=1)),
        "last_year": (today.replace(year=today.year - 1, month=1, day=1), today.replace(month=1, day=1)),
    }
    if name not in calendar:
        raise ValidationFailed(
            f"unknown period {name!r}",
            code="invalid_range",
            hint="periods: " + ", ".join([*fixed, *calendar]),
            errors=[FieldIssue("period", "unknown period")],
        )
    s, e = calendar[name]
    begin, finish = first(s, tz), first(e, tz)
    if name.startswith("this_") or name == "today":
        # "This month" so far: it ends now, not at the end of the month.
        finish = min(finish, max(now, begin + STEP))
    return begin, finish


def _key(t: dt.datetime, tz: ZoneInfo, interval: str) -> tuple[int, ...]:
    local = t.astimezone(tz)
    if interval == "hour":
        # fold: the repeated hour when clocks fall back is a bucket of its own
        return (local.year, local.month, local.day, local.hour, local.fold)
    if interval == "day":
        return (local.year, local.month, local.day)
    if interval == "week":
        iso = local.isocalendar()
        return (iso.year, iso.week)
    return (local.year, local.month)


def bucket_starts(rng: Range, interval: str, *, limit: int | None = MAX_BUCKETS) -> list[dt.datetime]:
    """The starts of the buckets covering [start, end), the first one at or before `start`."""
    nominal = _NOMINAL[interval]
    if limit is not None and rng.span / nominal > limit + 1:
        raise ValidationFailed(
            f"this range has more than {limit} {interval} buckets",
            code="too_many_buckets",
            hint="use a coarser interval (day, week, month) or a shorter range",
            errors=[FieldIssue("interval", f"at most {limit} buckets")],
        )
    tz = rng.tz
    key = _key(rng.start, tz, interval)
    first = _first_calendar_start(rng.start, tz, interval, key)
    if first is not None:
        t = first
    else:
        # Scan forward from well before the bucket's wall-clock start to its first instant.
        t = floor15(rng.start) - (nominal if interval != "hour" else STEP) - _SLACK
        if interval == "month":
            t -= dt.timedelta(days=3)
        while _key(t, tz, interval) != key:
            t += STEP
    starts = [t]
    local = t.astimezone(tz)
    while True:
        fast = _next_by_offset(local, tz, interval)
        if fast is not None:
            t, local = fast
        else:
            current = _key(t, tz, interval)
            guess = _next_calendar_start(t, tz, interval, current)
            if guess is not None:
                t = guess
            else:
                t = t + max(STEP, nominal - _SLACK) if interval != "hour" else t + STEP
                while _key(t, tz, interval) == current:
                    t += STEP
            local = t.astimezone(tz)
        if t >= rng.end:
            return starts
        starts.append(t)


def _local_midnight(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return floor15(dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(UTC))


# Days, weeks and months start at local midnight, so their starts can be read from the zone
# rules rather than scanned for (~14 conversions a bucket, ~110 for the first). A guess is
# taken only when the slot before it has another key and it has the bucket's: a bucket's key
# never goes back in time, so that instant is the one the scan would find. Anything else (a
# day that starts at 01:00, say) is scanned for as before.


def _first_calendar_start(
    t: dt.datetime, tz: ZoneInfo, interval: str, key: tuple[int, ...]
) -> dt.datetime | None:
    """The first instant of the day, week or month holding `t` (of key `key`), or None."""
    if interval == "hour":
        return None
    day = t.astimezone(tz).date()
    if interval == "week":
        day -= dt.timedelta(days=day.weekday())
    elif interval == "month":
        day = day.replace(day=1)
    guess = _local_midnight(day, tz)
    if _key(guess, tz, interval) == key and _key(guess - STEP, tz, interval) != key:
        return guess
    return None


_MIDNIGHT = dt.time(tzinfo=UTC)


def _next_by_offset(
    local: dt.datetime, tz: ZoneInfo, interval: str
) -> tuple[dt.datetime, dt.datetime] | None:
    """The first instant of the day, week or month after the one starting at `local` (a
    bucket's start, in the zone), and that instant in the zone: the next local midnight at the
    offset in force at `local`, two conversions where `_next_calendar_start` takes six. Taken
    only when the zone shows exactly that midnight at that instant, and the quarter hour before
    it as the previous day: then it is the instant `_next_calendar_start` finds (a change of
    offset in between, or a day starting at 01:00, answers None and is found as before)."""
    offset = local.utcoffset()
    if interval == "hour" or offset is None or offset % STEP:
        return None
    guess = dt.datetime.combine(_next_date(local.date(), interval), _MIDNIGHT) - offset
    seen = guess.astimezone(tz)
    # At `offset`, `guess` shows midnight and the quarter hour before it 23:45 the day before.
    if seen.utcoffset() != offset or (guess - STEP).astimezone(tz).utcoffset() != offset:
        return None
    return guess, seen


def _next_date(day: dt.date, interval: str) -> dt.date:
    """The first date of the day, week (Monday) or month after the one `day` is in."""
    if interval == "day":
        return day + dt.timedelta(days=1)
    if interval == "week":
        return day + dt.timedelta(days=7 - day.weekday())
    return (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def _next_calendar_start(
    t: dt.datetime, tz: ZoneInfo, interval: str, current: tuple[int, ...]
) -> dt.datetime | None:
    """The first instant of the day, week or month after the one starting at `t`, or None."""
    if interval == "hour":
        return None
    guess = _local_midnight(_next_date(t.astimezone(tz).date(), interval), tz)
    if guess > t and _key(guess - STEP, tz, interval) == current and _key(guess, tz, interval) != current:
        return guess
    return None
