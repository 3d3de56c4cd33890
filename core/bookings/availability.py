"""Working hours to bookable slots: pure computation, no database.

Hours are wall-clock times in the provider's IANA zone; `zoneinfo` turns each day's hours into
absolute instants, so a 09:00-17:00 day is 09:00-17:00 local on both sides of a DST change, and
weekly rules recur through `dateutil.rrule`. Everything is compared in UTC; slots are handed back
in the requester's zone.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from dateutil.rrule import WEEKLY, rrule, weekday
from dateutil.rrule import weekdays as rrule_weekdays

from core.bookings.schemas import WEEKDAYS, DateOverride, WeeklyHours

UTC = dt.UTC
Interval = tuple[dt.datetime, dt.datetime]


def _clock(value: str) -> tuple[int, int]:
    hours, minutes = value.split(":")
    return int(hours), int(minutes)


def local_instant(day: dt.date, clock: str, zone: ZoneInfo) -> dt.datetime:
    """The instant a wall-clock time of `day` names in `zone` ("24:00" = the next midnight).
    A time that does not exist (skipped by a DST jump) maps past the gap, as zoneinfo's fold=0."""
    hours, minutes = _clock(clock)
    if hours == 24:
        day, hours = day + dt.timedelta(days=1), 0
    return dt.datetime.combine(day, dt.time(hours, minutes), tzinfo=zone).astimezone(UTC)


def exists(local: dt.datetime) -> bool:
    """False for a wall-clock time inside a DST gap (e.g. 02:30 on a spring-forward night)."""
    assert local.tzinfo is not None
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) == local.replace(tzinfo=None)


@dataclass(frozen=True)
class Hours:
    """One provider's hours in one context."""

    zone: ZoneInfo
    weekly: Sequence[WeeklyHours] = ()
    overrides: Sequence[DateOverride] = ()
    _by_date: dict[dt.date, DateOverride] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_date.update({o.date: o for o in self.overrides})

    def windows(self, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.date, str, str]]:
        """(local date, start HH:MM, end HH:MM) of every working window touching [start, end)."""
        first = start.astimezone(self.zone).date() - dt.timedelta(days=1)
        last = end.astimezone(self.zone).date() + dt.timedelta(days=1)
        found: list[tuple[dt.date, str, str]] = []
        for rule in self.weekly:
            day: weekday = rrule_weekdays[WEEKDAYS.index(rule.weekday)]
            recurrence = rrule(
                WEEKLY,
                byweekday=day,
                dtstart=dt.datetime.combine(first, dt.time()),
                until=dt.datetime.combine(last, dt.time()),
            )
            for occurrence in recurrence:
                if occurrence.date() not in self._by_date:
                    found.append((occurrence.date(), rule.start, rule.end))
        for override in self.overrides:
            if first <= override.date <= last:
                found.extend((override.date, r.start, r.end) for r in override.intervals)
        return sorted(found)


@dataclass(frozen=True)
class Rules:
    """What a service asks of a slot."""

    duration: dt.timedelta
    step: dt.timedelta
    buffer_before: dt.timedelta
    buffer_after: dt.timedelta
    earliest: dt.datetime  # now + minimum notice
    latest: dt.datetime  # now + maximum advance


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = dt.timedelta(microseconds=1)


def micros(value: dt.datetime | dt.timedelta) -> int:
    """An instant (or a length) as whole microseconds: exact integer arithmetic for the grid."""
    return (value - _EPOCH if isinstance(value, dt.datetime) else value) // _MICRO


class Busy:
    """A provider's occupied ranges (already buffered), for O(log n) overlap checks."""

    def __init__(self, ranges: Iterable[Interval]) -> None:
        ordered = sorted(ranges)
        self._starts = [micros(a) for a, _ in ordered]
        self._max_end: list[int] = []
        for _, b in ordered:
            end = micros(b)
            self._max_end.append(max(end, self._max_end[-1]) if self._max_end else end)

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.overlaps_micros(micros(start), micros(end))

    def overlaps_micros(self, start: int, end: int) -> bool:
        # Ranges starting before `end` overlap unless all of them ended by `start`.
        i = bisect.bisect_left(self._starts, end)
        return i > 0 and self._max_end[i - 1] > start


def slot_starts(
    hours: Hours, rules: Rules, busy: Busy, start: dt.datetime, end: dt.datetime
) -> list[dt.datetime]:
    """UTC starts of the free slots beginning in [start, end): inside working hours (the whole
    duration), on the wall-clock grid of `step` from each window's start, past the notice, within
    the advance limit, and clear of busy time with both buffers."""
    found: list[dt.datetime] = []
    lower, upper = max(start, rules.earliest), min(end, rules.latest)
    if lower >= upper:
        return found
    for day, open_at, close_at in hours.windows(start, end):
        window_end = local_instant(day, close_at, hours.zone)
        hh, mm = _clock(open_at)
        local = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=hours.zone)
        window_start = local.astimezone(UTC)
        if exists(local) and local.utcoffset() == window_end.astimezone(hours.zone).utcoffset():
            # No DST change inside the window (the usual case): wall-clock steps are UTC steps.
            found += _on_grid(window_start, window_end, rules, busy, lower, upper)
            continue
        while True:
            candidate = local.astimezone(UTC)
            finish = candidate + rules.duration
            if finish > window_end:
                break
            if (
                exists(local)
                and lower <= candidate < upper
                and not busy.overlaps(candidate - rules.buffer_before, finish + rules.buffer_after)
            ):
                found.append(candidate)
            # Step on the wall clock: 09:00, 09:30, ... stay local times across a DST change.
            local = (local.replace(tzinfo=None) + rules.step).replace(tzinfo=hours.zone)
    return sorted(set(found))


def _on_grid(
    first: dt.datetime,
    window_end: dt.datetime,
    rules: Rules,
    busy: Busy,
    lower: dt.datetime,
    upper: dt.datetime,
) -> list[dt.datetime]:
    """Free starts first, first + step, ... in [lower, upper) whose duration ends by
    `window_end`: in whole microseconds, which is what makes a month of slots cheap."""
    step, length = micros(rules.step), micros(rules.duration)
    before, after = micros(rules.buffer_before), micros(rules.buffer_after)
    candidate, last, low, high = micros(first), micros(window_end), micros(lower), micros(upper)
    if candidate < low:  # the grid's first point at or after `lower`
        candidate += -(-(low - candidate) // step) * step
    found = []
    while candidate + length <= last and candidate < high:
        if not busy.overlaps_micros(candidate - before, candidate + length + after):
            found.append(_EPOCH + candidate * _MICRO)
        candidate += step
    return found


def fits(hours: Hours, rules: Rules, start: dt.datetime) -> str | None:
    """Why `start` can't be booked under these hours and rules (busy time aside: the exclusion
    constraint decides that), or None when it can. Any start inside the hours is accepted, not
    only the offered grid: a provider may place a booking at 09:10."""
    if start < rules.earliest:
        return "too_soon"
    if start > rules.latest:
        return "too_far_ahead"
    finish = start + rules.duration
    for day, open_at, close_at in hours.windows(start, finish):
        if local_instant(day, open_at, hours.zone) <= start and finish <= local_instant(
            day, close_at, hours.zone
        ):
            return None
    return "outside_hours"
