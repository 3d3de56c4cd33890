"""The obvious definition of free slot starts, one datetime at a time, written without the
code under test: the property tests of `core.bookings.availability` compare against it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from core.bookings.availability import Hours, Rules
from core.bookings.schemas import WEEKDAYS

UTC = dt.UTC


def week(zone: ZoneInfo, first: dt.date, days: int = 7) -> tuple[dt.datetime, dt.datetime]:
    """From local midnight of `first`, `days` days (in UTC)."""
    start = dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(UTC)
    end = dt.datetime.combine(first + dt.timedelta(days=days), dt.time(), tzinfo=zone).astimezone(UTC)
    return start, end


def exists_locally(local: dt.datetime) -> bool:
    """The zone's clocks really show this wall time (a spring-forward change skips some)."""
    naive = local.replace(tzinfo=None)
    return local.astimezone(UTC).astimezone(local.tzinfo).replace(tzinfo=None) == naive


def reference_windows(hours: Hours, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.date, str, str]]:
    """Every date from the day before `start` to the day after `end` (local): its override's
    intervals if it has one, else the weekly ranges of its weekday."""
    overrides = {o.date: o for o in hours.overrides}
    day = start.astimezone(hours.zone).date() - dt.timedelta(days=1)
    last = end.astimezone(hours.zone).date() + dt.timedelta(days=1)
    found = []
    while day <= last:
        if day in overrides:
            found += [(day, r.start, r.end) for r in overrides[day].intervals]
        else:
            found += [(day, w.start, w.end) for w in hours.weekly if w.weekday == WEEKDAYS[day.weekday()]]
        day += dt.timedelta(days=1)
    return found


def local_clock(day: dt.date, clock: str, zone: ZoneInfo) -> dt.datetime:
    hh, mm = (int(x) for x in clock.split(":"))
    if hh == 24:
        return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=zone)


def reference_starts(
    hours: Hours, r: Rules, busy: list[tuple[dt.datetime, dt.datetime]], start: dt.datetime, end: dt.datetime
) -> list[dt.datetime]:
    """The obvious definition, one datetime at a time: walk each window's wall clock by `step`,
    read each time both ways (fold 0 and 1: a fall-back change repeats an hour), keep the
    readings that exist, fit in the window, lie in [start, end) past the notice and within the
    advance limit, and whose buffered span meets no busy range."""
    found = set()
    for day, open_at, close_at in reference_windows(hours, start, end):
        close = local_clock(day, close_at, hours.zone).astimezone(UTC)
        local = local_clock(day, open_at, hours.zone).replace(tzinfo=None)
        while True:
            readings = [local.replace(tzinfo=hours.zone, fold=f) for f in (0, 1)]
            real = sorted(a.astimezone(UTC) for a in readings if exists_locally(a))
            if real and real[0] + r.duration > close:
                break
            for at in real:
                span = (at - r.buffer_before, at + r.duration + r.buffer_after)
                if (
                    at + r.duration <= close
                    and max(start, r.earliest) <= at < min(end, r.latest)
                    and not any(a < span[1] and span[0] < b for a, b in busy)
                ):
                    found.add(at)
            local += r.step
    return sorted(found)
