"""The signed pieces a range is read as from the rollups (`rollup_reads.pieces`), and the
ranges the statement reads them as (`rollup_reads.plan`, passed by `counting._rollup_reads`):
summed with their signs, every 15-minute slot of the range counts once, in its own bucket, and
nothing outside it counts; each piece lies on its grain's grid."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from core.analytics._queries import minutes
from core.analytics.counting import _rollup_reads
from core.analytics.models import GRAINS
from core.analytics.rollup_reads import OWN, pieces, plan
from core.analytics.timebuckets import Range, bucket_starts, ceil15, floor15, zone

QUARTER = dt.timedelta(minutes=15)
ZONES = ["UTC", "Europe/Paris", "Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Australia/Lord_Howe"]


def _coverage(a: dt.datetime, b: dt.datetime, th: list[dt.datetime]) -> dict[tuple[int, int], int]:
    """Per (15-minute slot, bucket), the pieces' signs summed."""
    th_m = [minutes(t) for t in th]
    seen: Counter[tuple[int, int]] = Counter()
    for grain, start, end, sign, index in pieces(minutes(a), minutes(b), th_m):
        assert start % grain == 0 and end % grain == 0 and start < end
        for t in range(start, end, 15):
            # An own piece lies inside the range; each row finds its own bucket.
            row = t - t % grain
            seen[(t, index if index != OWN else bisect.bisect_right(th_m, row) - 1)] += sign
    return {k: v for k, v in seen.items() if v}


def _random_ranges(
    seed: int, count: int
) -> Iterator[tuple[dt.datetime, dt.datetime, list[dt.datetime], str]]:
    """`count` random ranges (their 15-minute aligned inside, bucket starts, and a label) in
    the zones above, by any interval."""
    rnd = random.Random(seed)
    base = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    checked = 0
    while checked < count:
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
        yield a, b, th, f"{tz.key} {start} {end} {interval}"
        checked += 1


def _each_slot_once(a: dt.datetime, b: dt.datetime, th: list[dt.datetime]) -> dict[tuple[int, int], int]:
    """Every 15-minute slot of [a, b), once, in its bucket."""
    th_m = [minutes(t) for t in th]
    return {(t, bisect.bisect_right(th_m, t) - 1): 1 for t in range(minutes(a), minutes(b), 15)}


@pytest.mark.parametrize("seed", range(4))
def test_every_slot_counts_once_in_its_bucket(seed: int) -> None:
    for a, b, th, label in _random_ranges(seed, 60):
        assert _coverage(a, b, th) == _each_slot_once(a, b, th), label


def test_a_paris_day_is_three_rows_not_twenty_four() -> None:
    tz = zone("Europe/Paris")
    rng = Range(
        dt.datetime(2026, 1, 10, 23, tzinfo=dt.UTC), dt.datetime(2026, 1, 11, 23, tzinfo=dt.UTC), tz, None
    )
    th = [minutes(t) for t in bucket_starts(rng, "day")]
    got = pieces(minutes(rng.start), minutes(rng.end), th)
    assert sorted((g, s // 60 % 24, e // 60 % 24, sign) for g, s, e, sign, _ in got) == [
        (60, 23, 0, -1),
        (60, 23, 0, 1),
        (1440, 0, 0, 1),
    ]


def test_a_week_by_hour_is_one_range_of_hourly_rows() -> None:
    start = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    rng = Range(start, start + dt.timedelta(days=7), zone("UTC"), None)
    th = [minutes(t) for t in bucket_starts(rng, "hour")]
    reads = plan(minutes(rng.start), minutes(rng.end), th)
    assert reads.own == [(60, minutes(rng.start), minutes(rng.end))]
    assert reads.weighted == []


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.strip("{}").split(",") if v]


def _statement_reads(a: dt.datetime, b: dt.datetime, th: list[dt.datetime]) -> dict[tuple[int, int], int]:
    """What the rollup statement adds up, per (15-minute slot, bucket), read back from its
    parameters as PostgreSQL reads them: its ranges (own ones first, each row counted in the
    bucket holding its start; the others with their weights, by range number), and the
    bucket starts."""
    params: dict[str, Any] = {}
    _rollup_reads(a, b, th, params)
    th_m = _ints(params["th"])
    assert th_m == [minutes(t) for t in th]
    ranges = list(zip(_ints(params["rg"]), _ints(params["rs"]), _ints(params["re"]), strict=True))
    weights: dict[int, list[tuple[int, int]]] = {}
    for rid, bucket, sign in zip(
        _ints(params["wid"]), _ints(params["wb"]), _ints(params["wsign"]), strict=True
    ):
        weights.setdefault(rid, []).append((bucket, sign))
    own = params["own"]
    assert set(weights) == set(range(own + 1, len(ranges) + 1))  # every other range is weighted
    seen: Counter[tuple[int, int]] = Counter()
    for rid, (grain, start, end) in enumerate(ranges, start=1):
        assert grain in GRAINS and start % grain == 0 and end % grain == 0 and start < end
        for row in range(start, end, grain):
            counted = weights[rid] if rid > own else [(bisect.bisect_right(th_m, row) - 1, 1)]
            for bucket, sign in counted:
                for t in range(row, row + grain, 15):
                    seen[(t, bucket)] += sign
    return {k: v for k, v in seen.items() if v}


@pytest.mark.parametrize("seed", range(4))
def test_the_statement_reads_every_slot_once_in_its_bucket(seed: int) -> None:
    for a, b, th, label in _random_ranges(seed, 40):
        assert _statement_reads(a, b, th) == _each_slot_once(a, b, th), label


@pytest.mark.parametrize(
    ("tz", "start", "end"),
    [
        # Both DST changes of Paris inside, and the +05:45 of Kathmandu (days start at 18:15 UTC).
        (
            "Europe/Paris",
            dt.datetime(2026, 3, 1, 9, 7, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 2, 17, 3, tzinfo=dt.UTC),
        ),
        (
            "Asia/Kathmandu",
            dt.datetime(2026, 9, 1, 9, 7, tzinfo=dt.UTC),
            dt.datetime(2026, 11, 30, tzinfo=dt.UTC),
        ),
    ],
)
def test_a_zones_days_read_their_utc_days_as_one_range(tz: str, start: dt.datetime, end: dt.datetime) -> None:
    th = bucket_starts(Range(start, end, zone(tz), None), "day")
    a, b = ceil15(start), floor15(end)
    reads = plan(minutes(a), minutes(b), [minutes(t) for t in th])
    assert [g for g, _, _ in reads.own].count(1440) == 1  # every whole UTC day in one index range
    assert _statement_reads(a, b, th) == _each_slot_once(a, b, th)
    # The edge rows of a day are read once, for the day ending and the day starting there
    # (but at the range's ends, where a partial day reads them otherwise).
    inside = [w for _, _, _, w in reads.weighted if all(1 < i < len(th) - 2 for i, _ in w)]
    assert len(inside) >= len(th) - 6
    assert all(len(w) == 2 for w in inside)
    # Fewer than half as many index ranges as pieces: each day's edge rows are one.
    th_m = [minutes(t) for t in th]
    assert len(reads.own) + len(reads.weighted) <= len(pieces(minutes(a), minutes(b), th_m)) // 2
