"""The slot grid's fast path (integer microseconds, busy time subtracted in runs) against a
straightforward reference: random weekly hours and overrides over several days, DST changes in
Europe/Paris and America/New_York, buffers, minimum notice and advance limits, several
providers and the answer's cap. No database."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bookings import slots as slots_module
from core.bookings.availability import Busy, Hours, Rules, free_starts, in_zone, micros, slot_starts
from core.bookings.queries import Provider
from core.bookings.schemas import WEEKDAYS, DateOverride, SlotOut, SlotsQuery, TimeRange, WeeklyHours
from tests.core.bookings.reference import reference_starts, reference_windows, week

UTC = dt.UTC
PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
# Weeks around each of the four changes of 2026, and a quiet one.
FIRST_DAYS = [
    dt.date(2026, 3, 26),  # Paris springs forward on the 29th
    dt.date(2026, 10, 22),  # Paris falls back on the 25th
    dt.date(2026, 3, 5),  # New York springs forward on the 8th
    dt.date(2026, 10, 29),  # New York falls back on November 1st
    dt.date(2026, 6, 15),
]


def _clock(quarter: int) -> str:
    return "24:00" if quarter == 96 else f"{quarter // 4:02d}:{quarter % 4 * 15:02d}"


def _ranges(draw: st.DrawFn) -> list[tuple[str, str]]:
    """Up to three non-overlapping ranges of a day, on a 15-minute clock."""
    cuts = sorted(set(draw(st.lists(st.integers(0, 96), max_size=6))))
    pairs = [(a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if b > a and a < 96]
    return [(_clock(a), _clock(b)) for a, b in pairs]


@st.composite
def schedules(draw: st.DrawFn) -> tuple[Hours, dt.date, int]:
    zone = draw(st.sampled_from([PARIS, NEW_YORK]))
    first = draw(st.sampled_from(FIRST_DAYS))
    days = draw(st.integers(1, 9))
    weekly = [
        WeeklyHours(weekday=day, start=a, end=b)
        for day in WEEKDAYS
        if draw(st.booleans())
        for a, b in _ranges(draw)
    ]
    overridden = draw(st.sets(st.integers(-1, days), max_size=3))
    overrides = [
        DateOverride(
            date=first + dt.timedelta(days=d),
            intervals=[TimeRange(start=a, end=b) for a, b in _ranges(draw)],
        )
        for d in sorted(overridden)
    ]
    return Hours(zone=zone, weekly=weekly, overrides=overrides), first, days


@st.composite
def busy_times(draw: st.DrawFn, start: dt.datetime, days: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """Bookings anywhere in the window and a day around it, some overlapping or touching, some
    off the quarter-hour grid."""
    minutes = st.integers(-24 * 60, (days + 1) * 24 * 60)
    # Mostly on a 15- or 5-minute clock, so that ranges often begin or end exactly where a
    # slot or its buffer would.
    grain = draw(st.sampled_from([15, 5, 1]))
    at = minutes.map(lambda m: m - m % grain)
    spans = draw(st.lists(st.tuples(at, st.integers(0, 240 // grain).map(lambda n: grain * n)), max_size=30))
    return [(start + dt.timedelta(minutes=m), start + dt.timedelta(minutes=m + n)) for m, n in spans]


@settings(max_examples=400, deadline=None)
@given(
    schedule=schedules(),
    duration=st.sampled_from([15, 20, 30, 45, 60, 90, 150]),
    step=st.sampled_from([5, 15, 20, 30, 45, 60]),
    before=st.sampled_from([0, 5, 10, 30]),
    after=st.sampled_from([0, 15, 25]),
    notice=st.one_of(st.just(-48 * 60), st.integers(-48 * 60, 6 * 24 * 60)),
    advance=st.one_of(st.just(12 * 24 * 60), st.integers(0, 12 * 24 * 60)),
    data=st.data(),
)
def test_the_fast_grid_answers_what_the_reference_does(
    schedule: tuple[Hours, dt.date, int],
    duration: int,
    step: int,
    before: int,
    after: int,
    notice: int,
    advance: int,
    data: st.DataObject,
) -> None:
    hours, first, days = schedule
    start, end = week(hours.zone, first, days)
    now = start - dt.timedelta(hours=12)
    r = Rules(
        duration=dt.timedelta(minutes=duration),
        step=dt.timedelta(minutes=step),
        buffer_before=dt.timedelta(minutes=before),
        buffer_after=dt.timedelta(minutes=after),
        earliest=now + dt.timedelta(minutes=notice),
        latest=now + dt.timedelta(minutes=advance),
    )
    busy = data.draw(busy_times(start, days))
    want = reference_starts(hours, r, busy, start, end)
    assert slot_starts(hours, r, Busy(busy), start, end) == want
    # The offer statement hands busy time over as microseconds: the same answer.
    as_micros = Busy.of_micros([(micros(a), micros(b)) for a, b in busy])
    assert free_starts(hours, r, as_micros, start, end) == [micros(s) for s in want]
    assert hours.windows(start, end) == sorted(reference_windows(hours, start, end))


def _plain_starts(
    hours: Hours,
    busy: list[tuple[dt.datetime, dt.datetime]],
    start: dt.datetime,
    end: dt.datetime,
    *,
    duration: dt.timedelta,
    step: dt.timedelta,
) -> list[str]:
    """The fast grid's starts (HH:MM, UTC) with no buffers, notice or advance limit, once it is
    seen to answer what the reference does."""
    no_time = dt.timedelta(0)
    r = Rules(
        duration=duration, step=step, buffer_before=no_time, buffer_after=no_time, earliest=start, latest=end
    )
    got = slot_starts(hours, r, Busy(busy), start, end)
    assert got == reference_starts(hours, r, busy, start, end)
    return [s.strftime("%H:%M") for s in got]


def test_a_short_busy_range_between_two_grid_points_blocks_only_its_neighbours() -> None:
    """Busy ranges shorter than a step, several inside one step, and one the grid jumps over."""
    zone = ZoneInfo("UTC")
    hours = Hours(zone=zone, weekly=[WeeklyHours(weekday="mon", start="09:00", end="13:00")])
    start, end = week(zone, dt.date(2026, 6, 15), 1)
    at = dt.datetime(2026, 6, 15, tzinfo=UTC)
    busy = [
        (at + dt.timedelta(hours=10, minutes=5), at + dt.timedelta(hours=10, minutes=6)),
        (at + dt.timedelta(hours=10, minutes=7), at + dt.timedelta(hours=10, minutes=8)),
        (at + dt.timedelta(hours=11, minutes=1), at + dt.timedelta(hours=11, minutes=2)),
    ]
    got = _plain_starts(
        hours, busy, start, end, duration=dt.timedelta(minutes=1), step=dt.timedelta(minutes=30)
    )
    assert got == [f"{h:02d}:{m:02d}" for h in (9, 10, 11, 12) for m in (0, 30)]


def test_a_slot_may_end_where_a_booking_begins() -> None:
    """A slot ending exactly at a booking's start is free: at the window's opening, and right
    after the grid jumps past the booking before it."""
    zone = ZoneInfo("UTC")
    hours = Hours(zone=zone, weekly=[WeeklyHours(weekday="mon", start="09:00", end="17:00")])
    start, end = week(zone, dt.date(2026, 6, 15), 1)
    at = dt.datetime(2026, 6, 15, tzinfo=UTC)
    busy = [(at + dt.timedelta(hours=h), at + dt.timedelta(hours=h + 1)) for h in (10, 12)]
    hour = dt.timedelta(hours=1)
    got = _plain_starts(hours, busy, start, end, duration=hour, step=hour)
    assert got == ["09:00", "11:00", "13:00", "14:00", "15:00", "16:00"]


def _service(duration: int, step: int, after: int) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(),
        name="Cut",
        duration_minutes=duration,
        slot_interval_minutes=step,
        buffer_before_minutes=0,
        buffer_after_minutes=after,
        min_notice_minutes=0,
        max_advance_days=3650,
    )


def _next(month: int, day: int) -> dt.date:
    """The next such date at least a month away (clear of the notice, inside the advance)."""
    today = dt.date.today()
    this_year = dt.date(today.year, month, day)
    return this_year if this_year > today + dt.timedelta(days=30) else dt.date(today.year + 1, month, day)


@pytest.mark.parametrize("cap", [1, 7, 40, 500])
@pytest.mark.parametrize(
    "first",
    [
        pytest.param(lambda: dt.date.today() + dt.timedelta(days=400), id="plain"),
        # Two weeks holding the European and the US autumn changes (last Sunday of October,
        # first Sunday of November), and two holding the US spring change (second Sunday of
        # March): the requester's offsets change mid-answer.
        pytest.param(lambda: _next(10, 28), id="autumn-changes"),
        pytest.param(lambda: _next(3, 8), id="us-spring-change"),
    ],
)
def test_the_answer_merges_providers_in_turn_and_caps_like_the_reference(
    monkeypatch: pytest.MonkeyPatch, cap: int, first: Callable[[], dt.date]
) -> None:
    """Several providers with different hours and bookings, the requester in another zone: the
    same slots, provider order and truncation as merging every provider's full list."""
    monkeypatch.setattr(slots_module, "MAX_SLOTS", cap)
    first_day = first()
    q = SlotsQuery(
        service_id=uuid.uuid4(),
        from_date=first_day,
        to_date=first_day + dt.timedelta(days=13),
        time_zone="America/New_York",
    )
    service = _service(45, 15, 15)
    start, end = slots_module._window(q)
    providers = [Provider(uuid.uuid4(), f"pro-{i}", f"P{i}") for i in range(3)]
    hours = {
        providers[0].id: Hours(
            zone=PARIS, weekly=[WeeklyHours(weekday=d, start="08:00", end="20:00") for d in WEEKDAYS]
        ),
        providers[1].id: Hours(
            zone=NEW_YORK, weekly=[WeeklyHours(weekday="mon", start="00:00", end="24:00")]
        ),
        providers[2].id: Hours(
            zone=PARIS, weekly=[WeeklyHours(weekday=d, start="13:30", end="18:00") for d in WEEKDAYS[:5]]
        ),
    }
    busy_lists = {
        p.id: [
            (start + dt.timedelta(hours=h, minutes=7 * i), start + dt.timedelta(hours=h, minutes=7 * i + 50))
            for h in range(0, 14 * 24, 5 + i)
        ]
        for i, p in enumerate(providers)
    }
    out = slots_module._slots_out(
        service, providers, {**hours, uuid.uuid4(): None}, {p: Busy(b) for p, b in busy_lists.items()}, q
    )
    r = Rules(
        duration=dt.timedelta(minutes=45),
        step=dt.timedelta(minutes=15),
        buffer_before=dt.timedelta(0),
        buffer_after=dt.timedelta(minutes=15),
        earliest=start - dt.timedelta(days=1),
        latest=end + dt.timedelta(days=1),
    )
    merged: dict[dt.datetime, list[str]] = {}
    for p in providers:
        for s in reference_starts(hours[p.id], r, busy_lists[p.id], start, end):
            merged.setdefault(s, []).append(p.slug)
    zone = ZoneInfo(q.time_zone)
    want = [
        {"start": s.astimezone(zone), "end": (s + r.duration).astimezone(zone), "providers": slugs}
        for s, slugs in sorted(merged.items())
    ]
    assert len(want) > 40  # the cases with a cap below it truncate
    assert [slot.model_dump() for slot in out.slots] == want[:cap]
    assert out.truncated is (len(want) > cap)
    # The same text too: offsets (and the fold of a repeated hour) as astimezone gives them.
    assert [slot.model_dump_json() for slot in out.slots] == [
        SlotOut(**w).model_dump_json() for w in want[:cap]
    ]


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK, ZoneInfo("Australia/Lord_Howe")])
def test_an_instant_on_the_requesters_clock_is_what_astimezone_gives(zone: ZoneInfo) -> None:
    """Through both changes of the year, the repeated hour included (fold), and off the second."""
    for month in (3, 4, 10, 11):
        at = dt.datetime(2026, month, 1, tzinfo=UTC)
        for k in range(31 * 24 * 4):
            value = micros(at) + k * 15 * 60_000_000 + (k % 3) * 1_234_567
            want = (dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=value)).astimezone(zone)
            got = in_zone(value, zone)
            assert (got, got.fold, got.isoformat()) == (want, want.fold, want.isoformat())
