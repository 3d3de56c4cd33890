"""The signed pieces a range is read as from the rollups (`counting._bucket_pieces`): summed
with their signs, every 15-minute slot of the range counts once, in its own bucket, and
nothing outside it counts; each piece lies on its grain's grid."""

from __future__ import annotations

import bisect
import datetime as dt
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from core.analytics.counting import _bucket_pieces, _rollup_rows
from core.analytics.models import GRAINS
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


def _each_slot_once(
    a: dt.datetime, b: dt.datetime, th: list[dt.datetime]
) -> dict[tuple[dt.datetime, int], int]:
    """Every 15-minute slot of [a, b), once, in its bucket."""
    want = {}
    t = a
    while t < b:
        want[(t, bisect.bisect_right(th, t) - 1)] = 1
        t += QUARTER
    return want


@pytest.mark.parametrize("seed", range(4))
def test_every_slot_counts_once_in_its_bucket(seed: int) -> None:
    for a, b, th, label in _random_ranges(seed, 60):
        assert _coverage(a, b, th) == _each_slot_once(a, b, th), label


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


def _rows_read(a: dt.datetime, b: dt.datetime, th: list[dt.datetime]) -> dict[tuple[dt.datetime, int], int]:
    """What the statement of `counting._rollup_rows` adds up, per (15-minute slot, bucket), read
    from its parameters: the long pieces (a range each), and the short pieces' rows joined to
    their buckets and signs; and every row so joined is one the statement reads."""
    params: dict[str, Any] = {}
    _rollup_rows("counts", "name, n", a, b, th, params)
    seen: Counter[tuple[dt.datetime, int]] = Counter()

    def add(grain: int, row: dt.datetime, index: int, sign: int) -> None:
        assert aligned(row, grain)
        t = row
        while t < row + dt.timedelta(minutes=grain):
            seen[(t, index)] += sign
            t += QUARTER

    for g, s, e, sign, index in zip(
        *(params.get(k, []) for k in ("pg", "ps", "pe", "psign", "pb")), strict=True
    ):
        row = s
        while row < e:
            add(g, row, index if index >= 0 else bisect.bisect_right(th, row) - 1, sign)
            row += dt.timedelta(minutes=g)
    looked_up = {(g, t) for g in GRAINS for t in params.get(f"rows_{g}", [])}
    for g, s, e in zip(*(params.get(k, []) for k in ("rg", "rs", "re")), strict=True):
        assert e - s > dt.timedelta(minutes=g)  # a single row is looked up by its start
        row = s
        while row < e:
            assert (g, row) not in looked_up
            looked_up.add((g, row))
            row += dt.timedelta(minutes=g)
    weighted = list(zip(*(params.get(k, []) for k in ("wg", "ws", "wb", "wsign")), strict=True))
    assert {(g, t) for g, t, _, _ in weighted} == looked_up
    for g, t, index, sign in weighted:
        add(g, t, index, sign)
    return {k: v for k, v in seen.items() if v}


@pytest.mark.parametrize("seed", range(4))
def test_the_statement_reads_every_slot_once_in_its_bucket(seed: int) -> None:
    for a, b, th, label in _random_ranges(seed, 40):
        assert _rows_read(a, b, th) == _each_slot_once(a, b, th), label


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
    params: dict[str, Any] = {}
    _rollup_rows("counts", "name, n", a, b, th, params)
    assert params["pg"].count(1440) == 1  # every whole UTC day in one index range
    assert _rows_read(a, b, th) == _each_slot_once(a, b, th)
    # The edge rows of a day are read once, for the day ending and the day starting there.
    starts = list(zip(params["wg"], params["ws"], strict=True))
    assert len(set(starts)) < len(starts)
    if tz == "Europe/Paris":
        # At most half as many index ranges as pieces: one per run of adjacent edge hours, the
        # single ones looked up together.
        assert len(params.get("rg", [])) + len(params["pg"]) <= len(_bucket_pieces(a, b, th)) // 2
