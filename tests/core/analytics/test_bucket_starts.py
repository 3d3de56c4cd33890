"""Bucket starts (`timebuckets.bucket_starts`) equal a brute-force walk over the 15-minute grid
— every quarter hour whose local day, ISO week or month differs from the one before — in
zones with DST, :30 and :45 offsets, half-hour DST (Lord Howe), a skipped day (Apia, December
2011) and days starting at 01:00 (Havana, Santiago), so reading day, week and month starts
from the zone rules finds exactly the instants a scan finds."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from core.analytics.timebuckets import STEP, Range, _key, bucket_starts, floor15, zone

ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Asia/Tehran",
    "Pacific/Apia",
    "Africa/Casablanca",
    "Pacific/Chatham",
    "Asia/Gaza",
]


def _walk(rng: Range, interval: str) -> list[dt.datetime]:
    tz = rng.tz
    key = _key(rng.start, tz, interval)
    t = floor15(rng.start)
    while _key(t - STEP, tz, interval) == key:
        t -= STEP
    starts, current = [t], key
    while (t := t + STEP) < rng.end:
        if (k := _key(t, tz, interval)) != current:
            starts.append(t)
            current = k
    return starts


@pytest.mark.parametrize("seed", range(4))
def test_bucket_starts_equal_a_walk_over_the_grid(seed: int) -> None:
    r = random.Random(seed)
    cases = [
        ("Pacific/Apia", dt.datetime(2011, 12, 20, 7, 3, tzinfo=dt.UTC), interval)
        for interval in ("day", "week")
    ]
    for _ in range(60):
        start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=r.randrange(26 * 365 * 86400))
        cases.append((r.choice(ZONES), start, r.choice(["day", "week", "month"])))
    for name, start, interval in cases:
        end = start + dt.timedelta(days=r.randrange(1, 70), minutes=r.randrange(1440))
        rng = Range(start, end, zone(name), None)
        assert bucket_starts(rng, interval, limit=None) == _walk(rng, interval), (name, start, interval)
