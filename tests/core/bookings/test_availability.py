"""Working hours to slots, without a database: DST in Europe and the US, buffers, notice,
advance limits, overrides, and the compact hour format tools take."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.bookings import schemas
from core.bookings.availability import Busy, Hours, Rules, fits, slot_starts
from core.errors import ValidationFailed
from tests.core.bookings.reference import reference_starts, week

UTC = dt.UTC
PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
FAR_PAST, FAR_FUTURE = dt.datetime(2000, 1, 1, tzinfo=UTC), dt.datetime(2100, 1, 1, tzinfo=UTC)


def rules(
    minutes: int = 60, step: int | None = None, before: int = 0, after: int = 0, **kw: dt.datetime
) -> Rules:
    return Rules(
        duration=dt.timedelta(minutes=minutes),
        step=dt.timedelta(minutes=step or minutes),
        buffer_before=dt.timedelta(minutes=before),
        buffer_after=dt.timedelta(minutes=after),
        earliest=kw.get("earliest", FAR_PAST),
        latest=kw.get("latest", FAR_FUTURE),
    )


def every_day(start: str = "09:00", end: str = "17:00") -> list[schemas.WeeklyHours]:
    return [
        schemas.WeeklyHours(weekday=d, start=start, end=end)
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ]


@pytest.mark.parametrize(
    ("zone", "first", "change", "before_offset", "after_offset"),
    [
        (PARIS, dt.date(2026, 3, 26), dt.date(2026, 3, 29), 1, 2),  # CET -> CEST, last Sunday of March
        (PARIS, dt.date(2026, 10, 22), dt.date(2026, 10, 25), 2, 1),  # CEST -> CET
        (NEW_YORK, dt.date(2026, 3, 5), dt.date(2026, 3, 8), -5, -4),  # EST -> EDT, second Sunday of March
        (NEW_YORK, dt.date(2026, 10, 29), dt.date(2026, 11, 1), -4, -5),  # EDT -> EST
    ],
)
def test_a_week_across_a_dst_change_keeps_local_hours(
    zone: ZoneInfo, first: dt.date, change: dt.date, before_offset: int, after_offset: int
) -> None:
    hours = Hours(zone=zone, weekly=every_day())
    starts = slot_starts(hours, rules(), Busy(()), *week(zone, first))
    by_day: dict[dt.date, list[dt.datetime]] = {}
    for s in starts:
        by_day.setdefault(s.astimezone(zone).date(), []).append(s)
    assert len(by_day) == 7
    for day, day_starts in by_day.items():
        # 09:00 .. 16:00 local every day, eight one-hour slots, whatever the offset that day
        assert [s.astimezone(zone).strftime("%H:%M") for s in day_starts] == [
            f"{h:02d}:00" for h in range(9, 17)
        ]
        offset = day_starts[0].astimezone(zone).utcoffset()
        assert offset == dt.timedelta(hours=before_offset if day < change else after_offset), day
    # In UTC the first slot moves by an hour across the change.
    first_utc = {d: s[0].time() for d, s in by_day.items()}
    assert first_utc[change - dt.timedelta(days=1)] != first_utc[change]


def test_slots_are_handed_back_in_the_requesters_zone_across_both_changes() -> None:
    """The weeks between the US and the EU changes: Paris 09:00 is 04:00 in New York, not 03:00."""
    hours = Hours(zone=PARIS, weekly=every_day())
    start, end = week(NEW_YORK, dt.date(2026, 3, 6), days=4)  # Fri..Mon around New York's change
    starts = slot_starts(hours, rules(), Busy(()), start, end)
    first_of_day: dict[dt.date, str] = {}
    for s in starts:
        first_of_day.setdefault(s.astimezone(PARIS).date(), s.astimezone(NEW_YORK).strftime("%H:%M"))
    assert first_of_day[dt.date(2026, 3, 7)] == "03:00"  # EST (UTC-5) vs CET (UTC+1)
    assert first_of_day[dt.date(2026, 3, 8)] == "04:00"  # EDT (UTC-4) vs CET (UTC+1)


def test_wall_clock_steps_skip_times_that_do_not_exist() -> None:
    """A night shift through the spring-forward gap: 02:00 and 02:30 don't exist that night."""
    hours = Hours(zone=PARIS, weekly=[schemas.WeeklyHours(weekday="sun", start="00:00", end="04:00")])
    starts = slot_starts(hours, rules(30), Busy(()), *week(PARIS, dt.date(2026, 3, 29), days=1))
    local = [s.astimezone(PARIS).strftime("%H:%M") for s in starts]
    assert local == ["00:00", "00:30", "01:00", "01:30", "03:00", "03:30"]
    assert all(b - a >= dt.timedelta(minutes=30) for a, b in itertools.pairwise(starts))


LOS_ANGELES, AUCKLAND = ZoneInfo("America/Los_Angeles"), ZoneInfo("Pacific/Auckland")


@pytest.mark.parametrize(
    ("zone", "day", "repeated", "offsets"),
    [
        (LOS_ANGELES, dt.date(2027, 11, 7), "01:00", (-7, -8)),  # PDT -> PST at 02:00
        (AUCKLAND, dt.date(2027, 4, 4), "02:00", (13, 12)),  # NZDT -> NZST at 03:00
    ],
)
def test_the_hour_a_fall_back_change_repeats_is_offered_twice(
    zone: ZoneInfo, day: dt.date, repeated: str, offsets: tuple[int, int]
) -> None:
    """A 25-hour day has 25 hourly starts, an hour apart: the repeated wall-clock hour is two
    real instants, and a client may pick the second as well as the first."""
    hours = Hours(zone=zone, weekly=every_day("00:00", "24:00"))
    starts = slot_starts(hours, rules(), Busy(()), *week(zone, day, days=1))
    assert len(starts) == 25
    assert all(b - a == dt.timedelta(hours=1) for a, b in itertools.pairwise(starts))
    both = [
        dt.datetime.combine(day, dt.time.fromisoformat(repeated), tzinfo=dt.timezone(dt.timedelta(hours=h)))
        for h in offsets
    ]
    assert [s for s in starts if s.astimezone(zone).strftime("%H:%M") == repeated] == both
    assert [fits(hours, rules(), s, offered_only=True) for s in both] == [None, None]


def test_the_spring_forward_day_keeps_its_23_hours() -> None:
    hours = Hours(zone=LOS_ANGELES, weekly=every_day("00:00", "24:00"))
    starts = slot_starts(hours, rules(), Busy(()), *week(LOS_ANGELES, dt.date(2027, 3, 14), days=1))
    local = [s.astimezone(LOS_ANGELES).strftime("%H:%M%z") for s in starts]
    assert len(local) == 23
    assert local[:3] == ["00:00-0800", "01:00-0800", "03:00-0700"]


def test_a_time_in_the_gap_does_not_end_the_walk_before_a_later_time_that_fits() -> None:
    """02:30 on a spring-forward night read as 03:30: past the close for an hour's service, yet
    03:00 (an hour before the 04:00 close) still fits and is offered."""
    hours = Hours(zone=LOS_ANGELES, weekly=[schemas.WeeklyHours(weekday="sun", start="00:00", end="04:00")])
    starts = slot_starts(
        hours, rules(60, step=30), Busy(()), *week(LOS_ANGELES, dt.date(2027, 3, 14), days=1)
    )
    local = [s.astimezone(LOS_ANGELES).strftime("%H:%M") for s in starts]
    assert local == ["00:00", "00:30", "01:00", "01:30", "03:00"]


def test_buffers_keep_free_time_around_bookings() -> None:
    hours = Hours(zone=PARIS, weekly=every_day("09:00", "13:00"))
    day = dt.date(2026, 6, 10)
    taken = (
        dt.datetime(2026, 6, 10, 10, tzinfo=PARIS).astimezone(UTC),
        dt.datetime(2026, 6, 10, 11, 15, tzinfo=PARIS).astimezone(UTC),  # 10:00-11:00 + 15 min after
    )
    starts = slot_starts(hours, rules(60, step=15, before=15), Busy([taken]), *week(PARIS, day, 1))
    local = [s.astimezone(PARIS).strftime("%H:%M") for s in starts]
    # 08:45-09:00 buffer before 09:00 lies outside the hours: buffers may, bookings may not.
    # 09:00 needs 08:45..10:00 free: ok. 09:15 would end at 10:15: taken. The next fit starts at
    # 11:30 (its buffer before begins 11:15, when the taken range ends).
    assert local == ["09:00", "11:30", "11:45", "12:00"]


def test_notice_and_advance_limits() -> None:
    hours = Hours(zone=UTC_ZONE, weekly=every_day("00:00", "24:00"))
    now = dt.datetime(2026, 6, 10, 12, 7, tzinfo=UTC)
    r = rules(60, earliest=now + dt.timedelta(hours=2), latest=now + dt.timedelta(days=1))
    starts = slot_starts(hours, r, Busy(()), now - dt.timedelta(days=2), now + dt.timedelta(days=3))
    assert starts[0] == dt.datetime(2026, 6, 10, 15, tzinfo=UTC)
    assert starts[-1] == dt.datetime(2026, 6, 11, 12, tzinfo=UTC)
    assert fits(hours, r, dt.datetime(2026, 6, 10, 13, tzinfo=UTC)) == "too_soon"
    assert fits(hours, r, dt.datetime(2026, 6, 12, 13, tzinfo=UTC)) == "too_far_ahead"
    assert fits(hours, r, dt.datetime(2026, 6, 10, 15, 10, tzinfo=UTC)) is None  # off-grid is fine


UTC_ZONE = ZoneInfo("UTC")


def test_overrides_replace_a_days_hours() -> None:
    hours = Hours(
        zone=PARIS,
        weekly=every_day(),
        overrides=[
            schemas.DateOverride(date=dt.date(2026, 12, 24), intervals=[]),
            schemas.DateOverride(
                date=dt.date(2026, 12, 26), intervals=[schemas.TimeRange(start="18:00", end="20:00")]
            ),
        ],
    )
    starts = slot_starts(hours, rules(), Busy(()), *week(PARIS, dt.date(2026, 12, 23), 4))
    by_day: dict[dt.date, list[str]] = {}
    for s in starts:
        by_day.setdefault(s.astimezone(PARIS).date(), []).append(s.astimezone(PARIS).strftime("%H:%M"))
    assert dt.date(2026, 12, 24) not in by_day
    assert by_day[dt.date(2026, 12, 26)] == ["18:00", "19:00"]
    assert len(by_day[dt.date(2026, 12, 25)]) == 8
    assert fits(hours, rules(), dt.datetime(2026, 12, 26, 18, tzinfo=PARIS).astimezone(UTC)) is None
    assert (
        fits(hours, rules(), dt.datetime(2026, 12, 24, 10, tzinfo=PARIS).astimezone(UTC)) == "outside_hours"
    )
    assert (
        fits(hours, rules(), dt.datetime(2026, 12, 25, 16, 30, tzinfo=PARIS).astimezone(UTC))
        == "outside_hours"
    )


def test_the_compact_hour_format() -> None:
    weekly = schemas.parse_weekly(["mon-fri 09:00-12:00", "mon-fri 13:00-17:30", "sat 9:00-12:00"])
    assert len(weekly) == 11 and weekly[-1] == schemas.WeeklyHours(weekday="sat", start="09:00", end="12:00")
    overrides = schemas.parse_overrides(["2026-12-24 off", "2026-12-27 10:00-12:00 14:00-16:00"])
    assert overrides[0].intervals == [] and len(overrides[1].intervals) == 2
    bad_lines: tuple[list[str | dict[str, Any]], ...] = (
        ["someday 09:00-17:00"],
        ["fri-mon 09:00-17:00"],
        ["mon 17:00-09:00"],
        ["mon 25:00-26:00"],
    )
    for bad in bad_lines:
        with pytest.raises(ValidationFailed) as err:
            schemas.availability_from_lines("Europe/Paris", bad, [])
        assert err.value.errors[0].field == "weekly"
    with pytest.raises(ValidationFailed):
        schemas.availability_from_lines("Europe/Paris", [], ["24/12 off"])
    with pytest.raises(ValueError, match="overlaps"):
        schemas.AvailabilityIn(
            time_zone="Europe/Paris", weekly=schemas.parse_weekly(["mon 09:00-12:00", "mon 11:00-13:00"])
        )
    # `localtime` would be this server's own zone, whatever it is: no IANA name.
    for name in ("Mars/Olympus", "localtime", "Factory"):
        with pytest.raises(ValueError, match="IANA"):
            schemas.AvailabilityIn(time_zone=name, weekly=[])


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from([PARIS, NEW_YORK, ZoneInfo("Australia/Sydney"), ZoneInfo("Asia/Kolkata")]),
    day=st.sampled_from(
        [dt.date(2026, 3, 8), dt.date(2026, 3, 29), dt.date(2026, 10, 25), dt.date(2026, 11, 1), dt.date(2026, 4, 5),
         dt.date(2026, 10, 4), dt.date(2026, 6, 17)]
    ),
    opens=st.integers(0, 23 * 4),
    length=st.integers(1, 24 * 4),
    duration=st.sampled_from([15, 30, 45, 60, 90]),
    step=st.sampled_from([15, 20, 30, 60]),
    before=st.sampled_from([0, 10, 30]),
    after=st.sampled_from([0, 15]),
    taken=st.lists(st.tuples(st.integers(0, 24 * 60), st.integers(15, 180)), max_size=4),
)  # fmt: skip
def test_slots_match_the_obvious_definition(
    zone: ZoneInfo, day: dt.date, opens: int, length: int, duration: int, step: int, before: int, after: int,
    taken: list[tuple[int, int]],
) -> None:  # fmt: skip
    close = min(opens + length, 24 * 4)

    def clock(q: int) -> str:
        return "24:00" if q == 96 else f"{q // 4:02d}:{q % 4 * 15:02d}"

    hours = Hours(
        zone=zone,
        weekly=[
            schemas.WeeklyHours(weekday=schemas.WEEKDAYS[day.weekday()], start=clock(opens), end=clock(close))
        ],
    )
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(UTC)
    busy = [(midnight + dt.timedelta(minutes=m), midnight + dt.timedelta(minutes=m + n)) for m, n in taken]
    r = rules(duration, step, before, after)
    got = slot_starts(hours, r, Busy(busy), *week(zone, day, 1))
    want = reference_starts(hours, r, busy, *week(zone, day, 1))
    assert [s for s in got if s.astimezone(zone).date() == day] == [
        s for s in want if s.astimezone(zone).date() == day
    ]


def test_a_client_may_pick_only_a_start_the_search_offers() -> None:
    hours = Hours(zone=PARIS, weekly=every_day("09:00", "17:00"))
    r = rules(60, step=30)

    def at(hh: int, mm: int, day: dt.date = dt.date(2026, 6, 10)) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=PARIS).astimezone(UTC)

    assert fits(hours, r, at(12, 7)) is None  # the provider places a booking anywhere in the hours
    assert fits(hours, r, at(12, 7), offered_only=True) == "not_offered"
    assert fits(hours, r, at(12, 30), offered_only=True) is None
    assert fits(hours, r, at(16, 30), offered_only=True) == "outside_hours"  # the reason said first
    # Through the spring-forward gap the grid is the wall clock's: 03:00 is offered, 03:15 is not.
    spring = dt.date(2026, 3, 29)
    night = Hours(zone=PARIS, weekly=[schemas.WeeklyHours(weekday="sun", start="00:00", end="04:00")])
    assert fits(night, rules(30), at(3, 0, spring), offered_only=True) is None
    assert fits(night, rules(30), at(3, 15, spring), offered_only=True) == "not_offered"
    assert fits(night, rules(30), at(3, 15, spring)) is None


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from([PARIS, NEW_YORK, ZoneInfo("Asia/Kolkata")]),
    day=st.sampled_from(
        [dt.date(2026, 3, 8), dt.date(2026, 3, 29), dt.date(2026, 11, 1), dt.date(2026, 6, 17)]
    ),
    opens=st.integers(0, 20 * 4),
    duration=st.sampled_from([15, 30, 45, 60, 90]),
    step=st.sampled_from([10, 15, 20, 30, 60]),
    minute=st.integers(0, 24 * 60 - 1),
)
def test_offered_only_accepts_exactly_the_starts_the_search_offers(
    zone: ZoneInfo, day: dt.date, opens: int, duration: int, step: int, minute: int
) -> None:
    clock = f"{opens // 4:02d}:{opens % 4 * 15:02d}"
    hours = Hours(zone=zone, weekly=every_day(clock, "24:00"))
    r = rules(duration, step)
    first, last = week(zone, day, 1)
    start = first + dt.timedelta(minutes=minute)
    if start >= last:  # a 23-hour day
        return
    offered = set(slot_starts(hours, r, Busy(()), first, last))
    assert (fits(hours, r, start, offered_only=True) is None) == (start in offered)
