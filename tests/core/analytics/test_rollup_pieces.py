"""The signed pieces a range is read as from the rollups (`counting._bucket_pieces`): summed
with their signs, every 15-minute slot of the range counts once, in its own bucket, and
nothing outside it counts; each piece lies on its grain's grid."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from collections import Counter

import pytest

from core.analytics.counting import _bucket_pieces
from core.analytics.timebuckets import Range, aligned, bucket_starts, ceil15, floor15, floor_to, zone

QUARTER = dt.timedelta(minutes=15)
ZONES = ["UTC", "Europe/Paris", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe"]


def _coverage(a: dt.datetime, b: dt.datetime, th: list[dt.datetime]) -> dict[tuple[dt.datetime, int], int]:
    seen: Counter[tuple[dt.datetime, int]] = Counter()
    for (grain, start, end, sign), index in _bucket_pieces(a, b, th):
        assert aligned(start, grain) and aligned(end, grain) and start < end
        t = start
        while t < end:
            # A piece without an index lies inside the range; each row finds its own bucket.
            row = floor_to(t, grain)
            seen[(t, index if index >= 0 else bisect.bisect_right(th, row) - 1)] += sign
            t += QUARTER
    return {k: v for k, v in seen.items() if v}


@pytest.mark.parametrize("seed", range(4))
def test_every_slot_counts_once_in_its_bucket(seed: int) -> None:
    rnd = random.Random(seed)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    checked = 0
    while checked < 60:
        tz = zone(rnd.choice(ZONES))
        start = base + dt.timedelta(minutes=rnd.randrange(0, 500 * 24 * 60))
        end = start + dt.timedelta(minutes=rnd.randrange(1, 120 * 24 * 60))
        interval = rnd.choice(["hour", "day", "week", "month"])
        if interval == "hour" and end - start > dt.timedelta(days=40):
            continue
        th = bucket_starts(Range(start, end, tz, None), interval)
        a, b = ceil15(start), floor15(end)
        if a >= b:
            continue
        want = {}
        t = a
        while t < b:
            want[(t, bisect.bisect_right(th, t) - 1)] = 1
            t += QUARTER
        assert _coverage(a, b, th) == want, (tz, start, end, interval)
        checked += 1


def test_a_paris_day_is_three_rows_not_twenty_four() -> None:
    tz = zone("Europe/Paris")
    rng = Range(
        dt.datetime(2026, 1, 10, 23, tzinfo=dt.UTC), dt.datetime(2026, 1, 11, 23, tzinfo=dt.UTC), tz, None
    )
    th = bucket_starts(rng, "day")
    pieces = _bucket_pieces(rng.start, rng.end, th)
    assert sorted((g, s.hour, e.hour, sign) for (g, s, e, sign), _ in pieces) == [
        (60, 23, 0, -1),
        (60, 23, 0, 1),
        (1440, 0, 0, 1),
    ]


def test_a_week_by_hour_is_one_range_of_hourly_rows() -> None:
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    rng = Range(start, start + dt.timedelta(days=7), zone("UTC"), None)
    th = bucket_starts(rng, "hour")
    assert _bucket_pieces(rng.start, rng.end, th) == [((60, rng.start, rng.end, 1), -1)]
