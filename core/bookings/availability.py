"""Working hours to bookable slots: pure computation, no database.

Hours are wall-clock times in the provider's IANA zone; `zoneinfo` turns each day's hours into
absolute instants, so a 09:00-17:00 day is 09:00-17:00 local on both sides of a DST change, and
a weekly rule recurs on every date of its weekday. Everything is compared in UTC; slots are handed back
in the requester's zone.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

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


def real_instants(wall: dt.datetime, zone: ZoneInfo) -> list[int]:
    """The instants (microseconds, ascending) a naive wall-clock time names in `zone`: none in a
    spring-forward gap, two in the hour a fall-back change repeats (fold=0, then fold=1), else one."""
    readings = (wall.replace(tzinfo=zone, fold=f) for f in (0, 1))
    return sorted({micros(r.astimezone(UTC)) for r in readings if exists(r)})


@dataclass(frozen=True)
class Hours:
    """One provider's hours in one context."""

    zone: ZoneInfo
    weekly: Sequence[WeeklyHours] = ()
    overrides: Sequence[DateOverride] = ()
    _by_date: dict[dt.date, DateOverride] = field(default_factory=dict, init=False, repr=False)
    _by_weekday: dict[int, list[tuple[str, str]]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_date.update({o.date: o for o in self.overrides})
        for rule in self.weekly:
            self._by_weekday.setdefault(WEEKDAYS.index(rule.weekday), []).append((rule.start, rule.end))

    def windows(self, start: dt.datetime, end: dt.datetime) -> list[tuple[dt.date, str, str]]:
        """(local date, start HH:MM, end HH:MM) of every working window touching [start, end)."""
        first = start.astimezone(self.zone).date() - dt.timedelta(days=1)
        last = end.astimezone(self.zone).date() + dt.timedelta(days=1)
        found: list[tuple[dt.date, str, str]] = []
        day, one = first, dt.timedelta(days=1)
        while day <= last:  # a weekly rule recurs on every date of its weekday, unless overridden
            if (override := self._by_date.get(day)) is not None:
                found.extend((day, r.start, r.end) for r in override.intervals)
            else:
                found.extend((day, a, b) for a, b in self._by_weekday.get(day.weekday(), ()))
            day += one
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


def instant(value: int) -> dt.datetime:
    """The UTC instant of whole microseconds since the epoch (the inverse of `micros`)."""
    return _EPOCH + dt.timedelta(microseconds=value)


def in_zone(value: int, zone: ZoneInfo) -> dt.datetime:
    """The instant of `value` microseconds on `zone`'s clock, as `instant(value).astimezone(zone)`
    (fold included) in one conversion: an answer makes two per slot."""
    seconds, rest = divmod(value, 1_000_000)
    local = dt.datetime.fromtimestamp(seconds, zone)
    return local.replace(microsecond=rest) if rest else local


class Busy:
    """A provider's occupied ranges (already buffered) as sorted, merged microsecond intervals:
    overlap checks by bisection, and whole runs of free grid points found between them."""

    def __init__(self, ranges: Iterable[Interval] = ()) -> None:
        self._set(sorted((micros(a), micros(b)) for a, b in ranges))

    @classmethod
    def of_micros(cls, ranges: Iterable[Sequence[int]]) -> Busy:
        """From (start, end) pairs already in microseconds (what the offer statement returns)."""
        busy = cls.__new__(cls)
        busy._set(sorted((a, b) for a, b in ranges))
        return busy

    def _set(self, ordered: list[tuple[int, int]]) -> None:
        # Overlapping ranges merge: "overlaps" only asks whether any range meets a span, which
        # their union answers the same way (touching ones stay apart: a span of no length
        # between them meets neither).
        starts: list[int] = []
        ends: list[int] = []
        for a, b in ordered:
            if ends and a < ends[-1]:
                ends[-1] = max(ends[-1], b)
            else:
                starts.append(a)
                ends.append(b)
        self._starts, self._ends = starts, ends

    def overlaps(self, start: dt.datetime, end: dt.datetime) -> bool:
        return self.overlaps_micros(micros(start), micros(end))

    def overlaps_micros(self, start: int, end: int) -> bool:
        # Ranges starting before `end` overlap unless the last of them (the union is disjoint and
        # sorted) ended by `start`.
        i = bisect.bisect_left(self._starts, end)
        return i > 0 and self._ends[i - 1] > start

    def blocked(self, before: int, after: int) -> tuple[list[int], list[int]]:
        """The open intervals (lo, hi) of start times a slot of `before` + `after` microseconds
        around its start can't take: a start c is blocked iff lo < c < hi (disjoint, sorted)."""
        lows: list[int] = []
        highs: list[int] = []
        for a, b in zip(self._starts, self._ends, strict=True):
            lo, hi = a - after, b + before
            if highs and lo < highs[-1]:
                highs[-1] = max(highs[-1], hi)
            else:
                lows.append(lo)
                highs.append(hi)
        return lows, highs


def slot_starts(
    hours: Hours, rules: Rules, busy: Busy, start: dt.datetime, end: dt.datetime
) -> list[dt.datetime]:
    """UTC starts of the free slots beginning in [start, end): inside working hours (the whole
    duration), on the wall-clock grid of `step` from each window's start, past the notice, within
    the advance limit, and clear of busy time with both buffers."""
    return [instant(s) for s in free_starts(hours, rules, busy, start, end)]


def free_starts(hours: Hours, rules: Rules, busy: Busy, start: dt.datetime, end: dt.datetime) -> list[int]:
    """`slot_starts` in microseconds since the epoch, sorted and distinct: a month of slots is
    integer ranges between the busy intervals, without a datetime per grid point."""
    lower, upper = max(start, rules.earliest), min(end, rules.latest)
    if lower >= upper:
        return []
    low, high = micros(lower), micros(upper)
    step, length = micros(rules.step), micros(rules.duration)
    lows, highs = busy.blocked(micros(rules.buffer_before), length + micros(rules.buffer_after))
    zone = hours.zone
    found: list[int] = []
    for day, open_at, close_at in hours.windows(start, end):
        first, finish_by, steady = window_span(zone, day, open_at, close_at)
        if steady:
            # No DST change inside the window (the usual case): wall-clock steps are UTC steps.
            if first < low:  # the grid's first point at or after `low`
                first += -(-(low - first) // step) * step
            # The last start whose whole duration fits in the window, and before `high`.
            last = min(finish_by - length, high - 1)
            if first <= last:
                _free_on_grid(first, last, step, lows, highs, found)
            continue
        hh, mm = _clock(open_at)
        wall = dt.datetime.combine(day, dt.time(hh, mm))
        while True:
            # Step on the wall clock: 09:00, 09:30, ... stay local times across a DST change.
            # Each grid time is every instant it names, so the hour a fall-back change repeats
            # is offered twice; a time in a spring-forward gap names none and can't end the walk
            # (its fold=0 reading lies past later times that do exist).
            starts = real_instants(wall, zone)
            if starts and starts[0] + length > finish_by:
                break
            found.extend(
                c
                for c in starts
                if c + length <= finish_by and low <= c < high and not _blocked_at(c, lows, highs)
            )
            wall += rules.step
    found.sort()
    # Windows of one day may not overlap, but those of two days (a 24:00 close, an override) can
    # offer the same instant twice.
    return [s for i, s in enumerate(found) if i == 0 or s != found[i - 1]]


@lru_cache(maxsize=8192)
def window_span(zone: ZoneInfo, day: dt.date, open_at: str, close_at: str) -> tuple[int, int, bool]:
    """A working window's opening and closing instants in microseconds, and whether it is steady:
    its opening exists and the zone keeps one offset until it closes, so its wall-clock grid is a
    grid of equal UTC steps. Six zone conversions a window, the same for every search of that
    day: a pure function of its arguments (zoneinfo never reloads a zone's rules into a live
    `ZoneInfo`; a cleared cache makes new instances, hence new keys), so cached."""
    hh, mm = _clock(open_at)
    local = dt.datetime.combine(day, dt.time(hh, mm), tzinfo=zone)
    close = local_instant(day, close_at, zone)
    steady = exists(local) and local.utcoffset() == close.astimezone(zone).utcoffset()
    return micros(local.astimezone(UTC)), micros(close), steady


def _blocked_at(candidate: int, lows: list[int], highs: list[int]) -> bool:
    i = bisect.bisect_right(highs, candidate)  # the first interval ending after the candidate
    return i < len(lows) and lows[i] < candidate


def _free_on_grid(
    first: int, last: int, step: int, lows: list[int], highs: list[int], out: list[int]
) -> None:
    """Append first, first + step, ... <= last except those inside a blocked interval (lo, hi):
    each free run is one `range`, each blocked interval one jump to the grid past it."""
    c = first
    i = bisect.bisect_right(highs, c)  # intervals ending by `c` can't block it or what follows
    n = len(lows)
    while c <= last:
        if i == n or lows[i] >= last:
            out.extend(range(c, last + 1, step))
            return
        lo, hi = lows[i], highs[i]
        i += 1
        if hi <= c:  # a short interval the last jump passed over
            continue
        if c <= lo:
            out.extend(range(c, lo + 1, step))
        c += -(-(hi - c) // step) * step  # the first grid point at or after `hi`


def fits(hours: Hours, rules: Rules, start: dt.datetime, *, offered_only: bool = False) -> str | None:
    """Why `start` can't be booked under these hours and rules (busy time aside: the exclusion
    constraint decides that), or None when it can. A provider may place a booking at any start
    inside the hours (09:10, say); a client (`offered_only`) only at a start a slot search
    offers, on the service's grid."""
    if start < rules.earliest:
        return "too_soon"
    if start > rules.latest:
        return "too_far_ahead"
    finish = start + rules.duration
    zone = hours.zone
    inside = any(
        local_instant(day, open_at, zone) <= start and finish <= local_instant(day, close_at, zone)
        for day, open_at, close_at in hours.windows(start, finish)
    )
    if not inside:
        return "outside_hours"
    # The search itself, over one microsecond and nothing busy: whatever it would offer (its
    # grid, across DST changes too) is exactly what a client may pick.
    if offered_only and not free_starts(hours, rules, Busy(), start, start + _MICRO):
        return "not_offered"
    return None
