"""Funnels from per-client timelines: each step's (client, time) pairs read as packed bytes and
walked by numpy, instead of PostgreSQL grouping and hash-joining ~200k event rows.

The compaction job that folds a 15-minute bucket's client sets (`client_sets._fold`) also
rewrites the timeline row of the UTC hour holding it (`client_timelines`): every event of the
hour that has a numbered client, as its dictionary number and exact time (12 bytes,
`int4send(id) || timestamptz_send(ts)`). An hour a row, not a quarter hour: a month of three
steps is ~3k rows rather than ~13k. A bucket that still has `client_sets` rows (the last half
hour, or a late event for a folded bucket) may have events no timeline holds yet: the reader
takes that bucket's raw events too, in the same statement and so the same snapshot. An event
read twice (in a timeline row and raw) changes no answer: a funnel only asks for each
client's earliest qualifying time.

Times are exact (microseconds), so the answer is the SQL funnel's to the microsecond: the range
and window edges are applied to the exact times here, not to buckets.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from core.analytics._queries import fetch_rows
from core.analytics.timebuckets import floor_to
from core.uow import UnitOfWork

__all__ = ["FOLD_TIMELINES", "StepResult", "funnel_from_timelines"]

_PAIR = np.dtype([("c", ">u4"), ("t", ">i8")])  # int4send(id) || timestamptz_send(ts)
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # timestamptz_send counts from here, in µs
_NONE = np.int64(1 << 62)  # no time yet; far enough from int64's end to add a window to
_US = dt.timedelta(microseconds=1)


# CTEs of the fold statement (after `gone`): the timelines of the folded buckets' hours
# rewritten from their events, numbered by the dictionary (which numbered every client of `gone`
# in the statement before). Every event of a folded bucket visible to the statement has its
# client numbered (ingest writes an event and its bucket's `client_sets` row in one transaction),
# so none is left out; an event of the hour whose client has no number yet is in a bucket not
# folded, which readers read raw until a fold rewrites the hour again.
# A client's dictionary id, looked up by the dictionary's key, once per row: a subquery the
# planner keeps per row. Written as a join, the fold's plan hung on the tables' statistics --
# with none yet (a new tenant, tables never analysed) it scanned the tenant's whole dictionary,
# or all its events, per row: the suite's funnel test ran for minutes in one fold.
def id_of(tenant: str, client: str) -> str:
    return (
        f"(SELECT k.id FROM analytics.client_ids k WHERE k.tenant_id = {tenant} AND k.client_id = {client})"
    )


FOLD_TIMELINES = f"""
folded AS (
  SELECT DISTINCT tenant_id, name,
         date_bin(interval '1 hour', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour
    FROM gone
),
cleared AS (
  DELETE FROM analytics.client_timelines t USING folded f
   WHERE t.tenant_id = f.tenant_id AND t.name = f.name AND t.bucket = f.hour
),
lines AS (
  INSERT INTO analytics.client_timelines (tenant_id, name, bucket, events)
  SELECT f.tenant_id, f.name, f.hour,
         string_agg(int4send({id_of("e.tenant_id", "e.client_id")}) || timestamptz_send(e.ts),
                    CAST('' AS bytea))
    FROM folded f
    JOIN analytics.events e ON e.tenant_id = f.tenant_id AND e.name = f.name AND e.client_id IS NOT NULL
     AND e.ts >= f.hour AND e.ts < f.hour + interval '1 hour'
   GROUP BY 1, 2, 3
)"""

# Per step name: the packed pairs of its timeline rows, and of the raw events of its buckets
# not folded yet (clients the dictionary has not numbered come apart: text and packed times,
# in the same order).
# One index range per name, concatenated in index order: `name = ANY(...)` made PostgreSQL
# sort the ~9k rows of a month's three steps by name first (~15 ms of the statement's ~45 ms).
_READ = """
SELECT n.name, (SELECT string_agg(t.events, CAST('' AS bytea)) FROM analytics.client_timelines t
                 WHERE t.tenant_id = :tenant AND t.name = n.name
                   AND t.bucket >= :a AND t.bucket < :b) AS pairs,
       CAST(NULL AS text[]) AS unknown, CAST(NULL AS bytea) AS unknown_ts
  FROM unnest(CAST(:names AS text[])) AS n(name)
UNION ALL
SELECT e.name,
       string_agg(int4send(d.id) || timestamptz_send(e.ts), CAST('' AS bytea))
         FILTER (WHERE d.id IS NOT NULL),
       array_agg(e.client_id ORDER BY e.client_id, e.ts) FILTER (WHERE d.id IS NULL),
       string_agg(timestamptz_send(e.ts), CAST('' AS bytea) ORDER BY e.client_id, e.ts)
         FILTER (WHERE d.id IS NULL)
  FROM (SELECT DISTINCT name, bucket FROM analytics.client_sets
         WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[]))
           AND bucket >= :a AND bucket < :b) AS p
  JOIN analytics.events e ON e.tenant_id = :tenant AND e.name = p.name AND e.client_id IS NOT NULL
   AND e.ts >= p.bucket AND e.ts < p.bucket + interval '15 minutes'
  LEFT JOIN analytics.client_ids d ON d.tenant_id = :tenant AND d.client_id = e.client_id
 GROUP BY e.name
"""

Pairs = tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]  # (client numbers, µs since 2000)


@dataclass(frozen=True)
class StepResult:
    clients: int
    median_from_previous: float | None
    median_from_start: float | None


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // _US


async def _read(
    uow: UnitOfWork, tenant: uuid.UUID, names: list[str], a: dt.datetime, b: dt.datetime
) -> dict[str, Pairs]:
    """Per name, every (client number, time) pair of its events in the buckets [a, b); clients
    the dictionary has not numbered get numbers past its highest."""
    rows = await fetch_rows(uow, _READ, {"tenant": tenant, "names": names, "a": a, "b": b})
    known: dict[str, list[npt.NDArray[Any]]] = {n: [] for n in names}
    loose: list[tuple[str, list[str], npt.NDArray[np.int64]]] = []
    for row in rows:
        known[row.name].append(np.frombuffer(row.pairs or b"", dtype=_PAIR))
        if row.unknown:
            loose.append((row.name, row.unknown, np.frombuffer(row.unknown_ts, dtype=">i8").astype(np.int64)))
    out: dict[str, Pairs] = {}
    for name, parts in known.items():
        pairs = np.concatenate(parts) if parts else np.zeros(0, dtype=_PAIR)
        out[name] = (pairs["c"].astype(np.int64), pairs["t"].astype(np.int64))
    if loose:
        base = 1 + max((int(c.max()) for c, _ in out.values() if c.size), default=-1)
        numbers: dict[str, int] = {}
        for name, clients, times in loose:
            codes = np.fromiter(
                (numbers.setdefault(c, base + len(numbers)) for c in clients), np.int64, len(clients)
            )
            c0, t0 = out[name]
            out[name] = (np.concatenate([c0, codes]), np.concatenate([t0, times]))
    return out


def _median(values: npt.NDArray[np.float64]) -> float | None:
    """PostgreSQL's `percentile_cont(0.5)`: the lower middle value plus half the gap to the
    upper one, in that order of operations, so the float is the same to the last bit."""
    if not values.size:
        return None
    at = 0.5 * (values.size - 1)
    lo, hi = math.floor(at), math.ceil(at)
    middle = np.partition(values, (lo, hi))  # the two order statistics, no full sort
    low = float(middle[lo])
    return low if lo == hi else low + (float(middle[hi]) - low) * (at - lo)


def _firsts(size: int, clients: npt.NDArray[np.int64], times: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Per client number, the earliest of its times (`_NONE` for a client with none)."""
    first = np.full(size, _NONE, dtype=np.int64)
    np.minimum.at(first, clients, times)
    return first


async def funnel_from_timelines(
    uow: UnitOfWork,
    tenant: uuid.UUID,
    names: list[str],
    start: dt.datetime,
    end: dt.datetime,
    window: int,
) -> list[StepResult]:
    """The funnel of steps `names` (no filters) as `funnels._funnel_sql` defines it: clients'
    first step-1 time in [start, end), then each step's first time at or after the previous
    one (strictly after for the same name twice in a row) and within `window` seconds of it."""
    horizon = end + dt.timedelta(seconds=window)
    pairs = await _read(uow, tenant, sorted(set(names)), floor_to(start, 60), horizon)
    size = 1 + max((int(c.max()) for c, _ in pairs.values() if c.size), default=-1)
    c, t = pairs[names[0]]
    entered = (t >= _us(start)) & (t < _us(end))
    t1 = _firsts(size, c[entered], t[entered])
    reached = [t1]
    results = [StepResult(int(np.count_nonzero(t1 != _NONE)), None, None)]
    span = np.int64(window * 1_000_000)
    for k in range(1, len(names)):
        c, t = pairs[names[k]]
        prev = reached[-1][c]
        after = t > prev if names[k] == names[k - 1] else t >= prev
        ok = (prev != _NONE) & after & (t <= t1[c] + span)
        tk = _firsts(size, c[ok], t[ok])
        got = tk != _NONE
        reached.append(tk)
        results.append(
            StepResult(
                int(np.count_nonzero(got)),
                _median((tk[got] - reached[-2][got]) / 1e6),
                _median((tk[got] - t1[got]) / 1e6),
            )
        )
    return results
