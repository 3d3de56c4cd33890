"""Counting events over a range, bucketed: the one engine behind trends and the summary.

Counting is exact everywhere. Event counts come from the rollups for the whole 15-minute
slots of a range (the coarsest grain that fits inside, finer ones at its edges) and from raw
events for the slivers at its ends; filters and breakdowns on rolled-up properties from the
property rollup; distinct clients from the per-bucket client sets (`client_sets`). Anything
the rollups cannot answer exactly (other properties, distinct clients with a filter or a
breakdown) is computed from the raw events of the tenant, through the index on (tenant, name,
time).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from core.analytics._queries import fetch_rows
from core.analytics.client_sets import unique_clients
from core.analytics.filters import PropertyFilter, compile_filters
from core.analytics.models import GRAINS, ROLLUP_PROPERTIES
from core.analytics.policy import MEMBER, SOURCE
from core.analytics.timebuckets import Range, aligned, ceil15, ceil_to, floor15, floor_to
from core.uow import UnitOfWork

Key = tuple[str, str | None, bool]  # (event, breakdown value, is "other")


@dataclass
class Spec:
    """What to count: events by name for a tenant, filtered, optionally broken down (top `limit`)."""

    tenant: uuid.UUID
    names: list[str]
    measure: str
    filters: list[PropertyFilter]
    breakdown: str | None
    limit: int


@dataclass
class Result:
    """Series per key over `n` buckets, their totals, and which path computed them."""

    n: int
    values: dict[Key, list[int]] = field(default_factory=dict)
    totals: dict[Key, int] = field(default_factory=dict)
    path: Literal["rollup", "raw", "rollup+raw"] = "raw"
    top: list[str | None] | None = None

    def add(self, key: Key, bucket: int | None, value: int) -> None:
        series = self.values.setdefault(key, [0] * self.n)
        if bucket is None:
            self.totals[key] = self.totals.get(key, 0) + value
        else:
            series[bucket] += value


def _breakdown_sql(breakdown: str | None) -> str:
    if breakdown is None:
        return "CAST(NULL AS text)"
    if breakdown == MEMBER:
        return "person_id::text"
    if breakdown == SOURCE:
        return "source"
    return "(properties ->> CAST(:bkey AS text))"


_RANGE = "ts >= :start AND ts < :end"
_RAW_EVENTS = (
    "SELECT name, ts, client_id, {bval} AS bval FROM analytics.events"
    f" WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND {_RANGE}"
    " AND {filters}{clients}"
)
# With a top N: the values kept (a NULL value, "not set", may be one of them), the rest "other".
# Distinct clients: ranked and counted from the events themselves.
_RAW_TOP = """
WITH ev AS MATERIALIZED ({events}),
top AS MATERIALIZED ({top}),
tagged AS (
  SELECT name, client_id, CASE WHEN hit THEN bval END AS val, NOT hit AS other, {bucket} AS b
    FROM (SELECT ev.name, ev.ts, ev.client_id, ev.bval,
                 t.bval IS NOT NULL
                 OR (ev.bval IS NULL AND (SELECT coalesce(bool_or(bval IS NULL), false) FROM top)) AS hit
            FROM ev LEFT JOIN top t ON t.bval = ev.bval) x
)
SELECT name, val, other, b, {measure} AS v, {total} AS total FROM tagged GROUP BY {group}
"""
# Counts add up: aggregate the raw events once, then rank and fold the (small) aggregate.
_RAW_TOP_COUNTS = """
WITH agg AS MATERIALIZED (
  SELECT name, bval, {bucket} AS b, count(*) AS n FROM ({events}) e GROUP BY 1, 2, 3
),
top AS MATERIALIZED ({top}),
marked AS (
  SELECT agg.name, agg.bval, agg.b, agg.n,
         t.bval IS NOT NULL
         OR (agg.bval IS NULL AND (SELECT coalesce(bool_or(bval IS NULL), false) FROM top)) AS hit
    FROM agg LEFT JOIN top t ON t.bval = agg.bval
)
SELECT name, CASE WHEN hit THEN bval END AS val, NOT hit AS other, b, sum(n) AS v, false AS total
  FROM marked GROUP BY 1, 2, 3, 4
"""
# Without: one series per event (and per value when every value is its own series).
_RAW_PLAIN = """
SELECT name, val, other, b, {measure} AS v, {total} AS total
  FROM (SELECT name, client_id, bval AS val, false AS other, {bucket} AS b FROM ({events}) e) ev
 GROUP BY {group}
"""
_BUCKET_SQL = "width_bucket(ts, CAST(:th AS timestamptz[])) - 1"


def _ranked(spec: Spec, top: list[str | None] | None, limit: int | None) -> bool:
    """A breakdown folded to its top values (given, or the top `limit`), the rest as "other"."""
    return spec.breakdown is not None and (top is not None or limit is not None)


def _raw_sql(spec: Spec, top: list[str | None] | None, limit: int | None) -> tuple[str, dict[str, Any]]:
    """The statement reading raw events per (event, value, bucket), and its filter parameters
    plus those of the top values."""
    where, params = compile_filters(spec.filters, "f")
    uniques = spec.measure == "unique_clients"
    measure = "count(DISTINCT client_id)" if uniques else "count(*)"
    events = _RAW_EVENTS.format(
        bval=_breakdown_sql(spec.breakdown),
        filters=where,
        clients=" AND client_id IS NOT NULL" if uniques else "",
    )
    # Distinct clients over the whole range are not the sum of the buckets': a grouping set of
    # their own. Event counts are summed from the buckets.
    group = "GROUPING SETS ((name, val, other, b), (name, val, other))" if uniques else "name, val, other, b"
    total = "GROUPING(b) = 1" if uniques else "false"
    if not _ranked(spec, top, limit):
        sql = _RAW_PLAIN.format(events=events, bucket=_BUCKET_SQL, measure=measure, total=total, group=group)
        return sql, params
    source, rank = ("ev", measure) if uniques else ("agg", "sum(n)")
    if top is not None:
        top_sql = "SELECT unnest(CAST(:top AS text[])) AS bval"
        params["top"] = top
    else:
        top_sql = (
            f'SELECT bval FROM {source} GROUP BY bval ORDER BY {rank} DESC, bval COLLATE "C" NULLS LAST'
            " LIMIT :limit"
        )
        params["limit"] = limit
    template = _RAW_TOP if uniques else _RAW_TOP_COUNTS
    sql = template.format(
        events=events, top=top_sql, bucket=_BUCKET_SQL, measure=measure, total=total, group=group
    )
    return sql, params


async def _raw(
    uow: UnitOfWork,
    spec: Spec,
    start: dt.datetime,
    end: dt.datetime,
    thresholds: list[dt.datetime],
    result: Result,
    *,
    top: list[str | None] | None,
    limit: int | None,
    skip: tuple[dt.datetime, dt.datetime] | None = None,
) -> list[str | None] | None:
    """Raw events of [start, end) (but those of [skip), when given: the rollup's part) into
    `result`. With a breakdown: the given `top` values, or the top `limit` by measure, the rest
    as "other" (`limit` None: every value its own series). Returns the top values used."""
    uniques = spec.measure == "unique_clients"
    sql, params = _raw_sql(spec, top, limit)
    params.update(tenant=spec.tenant, names=spec.names, start=start, end=end, th=thresholds)
    if skip is not None:
        # Both edges in one statement: two ranges of the (tenant, name, ts) index.
        sql = sql.replace(_RANGE, "((ts >= :start AND ts < :skip_a) OR (ts >= :skip_b AND ts < :end))")
        params.update(skip_a=skip[0], skip_b=skip[1])
    if spec.breakdown is not None and spec.breakdown not in (MEMBER, SOURCE):
        params["bkey"] = spec.breakdown
    used: set[str | None] = set()
    for row in await fetch_rows(uow, sql, params):
        value = int(row.v)
        if row.total:
            result.add((row.name, row.val, row.other), None, value)
        else:
            result.add((row.name, row.val, row.other), row.b, value)
            if not uniques:
                result.add((row.name, row.val, row.other), None, value)
        if not row.other:
            used.add(row.val)
    if _ranked(spec, top, limit) and top is None:
        return sorted(used, key=lambda v: (v is None, v or ""))
    return top


def _pieces(a: dt.datetime, b: dt.datetime, grains: list[int]) -> list[tuple[int, dt.datetime, dt.datetime]]:
    """[a, b) (on the finest grain's grid) as runs of whole buckets, the coarsest grain inside and
    finer ones at the edges: a year by UTC week reads 365 daily rows, not 35,040 quarter hours."""
    g, finer = grains[0], grains[1:]
    if not finer:
        return [(g, a, b)] if a < b else []
    s, e = ceil_to(a, g), floor_to(b, g)
    if e <= s:
        return _pieces(a, b, finer)
    return [*_pieces(a, s, finer), (g, s, e), *_pieces(e, b, finer)]


def _rollup_rows(
    table: str, columns: str, a: dt.datetime, b: dt.datetime, th: list[dt.datetime], params: dict[str, Any]
) -> str:
    """The rollup rows covering [a, b): the coarsest grain every bucket start lies on inside,
    finer ones at the edges; one plain range per grain (UNION ALL, not OR: each is an
    index-only scan of the primary key, which carries the counts)."""
    usable = sorted((g for g in GRAINS if all(aligned(t, g) for t in th)), reverse=True)
    parts = []
    for i, (g, s, e) in enumerate(_pieces(a, b, usable)):
        params.update({f"g{i}": g, f"s{i}": s, f"e{i}": e})
        parts.append(
            f"SELECT {columns} FROM analytics.{table} WHERE tenant_id = :tenant"
            f" AND grain = :g{i} AND name = ANY(CAST(:names AS text[]))"
            f" AND bucket >= :s{i} AND bucket < :e{i}"
        )
    return "(" + " UNION ALL ".join(parts) + ")"


async def _rollup(
    uow: UnitOfWork, spec: Spec, a: dt.datetime, b: dt.datetime, th: list[dt.datetime], result: Result
) -> None:
    """Counts of [a, b) (15-minute aligned) from a rollup: per member from `counts`, filtered or
    by a rolled-up property from `property_counts`."""
    params: dict[str, Any] = {"tenant": spec.tenant, "names": spec.names, "th": th}
    if by_properties(spec):
        where, fparams = compile_filters(spec.filters, "f")
        params.update(fparams)
        who = "CAST(NULL AS text)"
        if spec.breakdown is not None:
            params["bkey"] = spec.breakdown
            who = "(properties ->> CAST(:bkey AS text))"
        ranges = _rollup_rows("property_counts", "name, bucket, props AS properties, n", a, b, th, params)
        source = f"{ranges} AS r WHERE {where}"
    else:
        who = "person_id::text" if spec.breakdown == MEMBER else "CAST(NULL AS text)"
        source = _rollup_rows("counts", "name, bucket, person_id, n", a, b, th, params) + " AS r"
    rows = await fetch_rows(
        uow,
        f"SELECT name, {who} AS val, width_bucket(bucket, CAST(:th AS timestamptz[])) - 1 AS b, sum(n) AS v"
        f" FROM {source} GROUP BY 1, 2, 3",
        params,
    )
    for row in rows:
        result.add((row.name, row.val, False), row.b, int(row.v))
        result.add((row.name, row.val, False), None, int(row.v))


def by_properties(spec: Spec) -> bool:
    """Counts filtered or broken down by properties the rollup keeps (`ROLLUP_PROPERTIES`)."""
    keys = {f.property for f in spec.filters}
    if spec.breakdown is not None:
        keys.add(spec.breakdown)
    return bool(keys) and keys <= ROLLUP_PROPERTIES


def _top_in_python(result: Result, spec: Spec, top: list[str | None] | None) -> Result:
    """Top N values by total count (ties by value), the rest summed as "other". Only for
    counts, where sums are exact."""
    if spec.breakdown is None:
        return result
    if top is None:
        totals: dict[str | None, int] = defaultdict(int)
        for (_, val, _), total in result.totals.items():
            totals[val] += total
        ranked = sorted(totals, key=lambda v: (-totals[v], v is None, v or ""))
        top = ranked[: spec.limit]
    keep = set(top)
    out = Result(result.n, path=result.path, top=top)
    for key, series in result.values.items():
        name, val, _ = key
        target: Key = (name, val, False) if val in keep else (name, None, True)
        for b, v in enumerate(series):
            if v:
                out.add(target, b, v)
        out.add(target, None, result.totals.get(key, 0))
    return out


async def compute(
    uow: UnitOfWork,
    spec: Spec,
    rng: Range,
    th: list[dt.datetime],
    *,
    top: list[str | None] | None = None,
    use_rollup: bool = True,
) -> Result:
    """One series set over `rng` bucketed by `th`: from the rollup for the whole 15-minute
    slots when it can answer exactly, from raw events for the rest (or for everything)."""
    result = Result(len(th))
    inner_start, inner_end = ceil15(rng.start), floor15(rng.end)
    on_grid = use_rollup and inner_start < inner_end and all(aligned(t) for t in th)
    if on_grid and spec.measure == "unique_clients" and not spec.filters and spec.breakdown is None:
        per_bucket, totals, off_grid = await unique_clients(uow, spec.tenant, spec.names, rng, th)
        for (name, b), n in per_bucket.items():
            result.add((name, None, False), b, n)
        for name, n in totals.items():
            result.add((name, None, False), None, n)
        result.path = "rollup+raw" if off_grid else "rollup"
        return result
    rollup_ok = (
        on_grid
        and spec.measure == "count"
        and ((not spec.filters and spec.breakdown in (None, MEMBER)) or by_properties(spec))
    )
    if not rollup_ok:
        result.top = await _raw(uow, spec, rng.start, rng.end, th, result, top=top, limit=spec.limit)
        result.path = "raw"
        return result
    await _rollup(uow, spec, inner_start, inner_end, th, result)
    result.path = "rollup"
    if rng.start < inner_start or inner_end < rng.end:
        skip = (inner_start, inner_end)
        await _raw(uow, spec, rng.start, rng.end, th, result, top=None, limit=None, skip=skip)
        result.path = "rollup+raw"
    return _top_in_python(result, spec, top)
