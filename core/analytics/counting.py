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
import functools
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from core.analytics._queries import THRESHOLDS, at_minute, fetch_rows, int_array, ints, minutes, th_param
from core.analytics.client_sets import unique_clients
from core.analytics.filters import PropertyFilter, compile_filters
from core.analytics.models import ROLLUP_PROPERTIES
from core.analytics.policy import MEMBER, SOURCE
from core.analytics.rollup_reads import plan
from core.analytics.timebuckets import Range, aligned, ceil15, floor15
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
_BUCKET_SQL = f"width_bucket(ts, {THRESHOLDS}) - 1"


def _ranked(spec: Spec, top: list[str | None] | None, limit: int | None) -> bool:
    """A breakdown folded to its top values (given, or the top `limit`), the rest as "other"."""
    return spec.breakdown is not None and (top is not None or limit is not None)


# The slivers at both edges of a rollup's part: two ranges of the (tenant, name, ts) index,
# each its own scan. As one `OR` of the two, a partition holding only one of them was read
# through the index on (tenant, name) alone with the times as a filter: every event of those
# names in the month (the current month's partition, in every trend up to now).
_SLIVERS = ("ts >= :start AND ts < :skip_a", "ts >= :skip_b AND ts < :end")


def _raw_sql(
    spec: Spec, top: list[str | None] | None, limit: int | None, *, slivers: bool = False
) -> tuple[str, dict[str, Any]]:
    """The statement reading raw events per (event, value, bucket), and its filter parameters
    plus those of the top values; with `slivers`, only the events of [start, skip_a) and
    [skip_b, end)."""
    where, params = compile_filters(spec.filters, "f")
    uniques = spec.measure == "unique_clients"
    measure = "count(DISTINCT client_id)" if uniques else "count(*)"
    events = _RAW_EVENTS.format(
        bval=_breakdown_sql(spec.breakdown),
        filters=where,
        clients=" AND client_id IS NOT NULL" if uniques else "",
    )
    if slivers:
        events = " UNION ALL ".join(events.replace(_RANGE, edge) for edge in _SLIVERS)
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


def _raw_statement(
    spec: Spec,
    start: dt.datetime,
    end: dt.datetime,
    thresholds: list[dt.datetime],
    *,
    top: list[str | None] | None,
    limit: int | None,
    skip: tuple[dt.datetime, dt.datetime] | None,
    th_text: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """The statement of `_raw` and its parameters (`th_text`: the bucket starts' parameter,
    when the caller has it already)."""
    sql, params = _raw_sql(spec, top, limit, slivers=skip is not None)
    th = th_text if th_text is not None else th_param(thresholds)
    params.update(tenant=spec.tenant, names=spec.names, start=start, end=end, th=th)
    if skip is not None:
        params.update(skip_a=skip[0], skip_b=skip[1])
    if spec.breakdown is not None and spec.breakdown not in (MEMBER, SOURCE):
        params["bkey"] = spec.breakdown
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
    sql, params = _raw_statement(spec, start, end, thresholds, top=top, limit=limit, skip=skip)
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


# The rollup rows of a range, read as planned by `rollup_reads.plan`: every range one index
# range of the primary key (which carries the counts: an index-only scan), in ONE scan node, a
# lateral join over the ranges passed as arrays (each scan node of a statement costs its
# planning, its start-up and the row-level-security checks once more). Each range's rows are
# summed per (range, event, value) first, then counted in their buckets: an own range's rows in
# the bucket holding their start, a weighted range's sum in each of its buckets with its sign.
# Arrays and bucket starts go as one text each, in minutes since EPOCH: the driver checks and
# encodes a list element by element (~1 us each, ~1,000 per 90-day Paris trend).
# OFFSET 0 keeps the subquery a lateral one: flattened, the planner hashes the ranges and scans
# the tenant's whole rollup instead of one index range per range. The ranges' instants are
# computed apart (OFFSET 0 again): an index condition on a function of another table's column
# (`make_interval(mins => p.s)`) is not leakproof, so row-level security applies it as a filter
# after its own check, over the tenant's every row of the grain.
_ROLLUP_SQL = """
SELECT r.name, r.val, coalesce(w.b, r.ob) AS b, CAST(sum(r.v * coalesce(w.sign, 1)) AS bigint) AS v
  FROM (SELECT p.id, c.name, {who} AS val,
               CASE WHEN p.id <= :own THEN width_bucket(c.bucket, {th}) - 1 END AS ob,
               CAST(sum(c.n) AS bigint) AS v
          FROM (SELECT grain, {s} AS s, {e} AS e, id
                  FROM unnest({rg}, {rs}, {re}) WITH ORDINALITY AS p(grain, s, e, id) OFFSET 0) AS p
         CROSS JOIN LATERAL (
               SELECT bucket, {columns} FROM analytics.{table}
                WHERE tenant_id = :tenant AND grain = p.grain AND name = ANY(CAST(:names AS text[]))
                  AND bucket >= p.s AND bucket < p.e OFFSET 0) AS c
         WHERE {where}
         GROUP BY 1, 2, 3, 4) AS r
  LEFT JOIN unnest({wid}, {wb}, {wsign}) AS w(id, b, sign) ON w.id = r.id
 GROUP BY 1, 2, 3
HAVING sum(r.v * coalesce(w.sign, 1)) <> 0
"""


def _rollup_reads(a: dt.datetime, b: dt.datetime, th: list[dt.datetime], params: dict[str, Any]) -> None:
    """The parameters of `_ROLLUP_SQL` reading [a, b) bucketed by `th` (`rollup_reads.plan`):
    the ranges, own ones first (`own`: how many), and the weights of the others by range."""
    th_minutes = [minutes(t) for t in th]
    reads = plan(minutes(a), minutes(b), th_minutes)
    ranges = [*reads.own, *(w[:3] for w in reads.weighted)]
    rg, rs, re = zip(*ranges, strict=True) if ranges else ((), (), ())
    weights = [
        (len(reads.own) + i, bucket, sign)
        for i, (_, _, _, ws) in enumerate(reads.weighted, start=1)
        for bucket, sign in ws
    ]
    wid, wb, wsign = zip(*weights, strict=True) if weights else ((), (), ())
    params.update(
        th=int_array(th_minutes),
        own=len(reads.own),
        rg=int_array(rg),
        rs=int_array(rs),
        re=int_array(re),
        wid=int_array(wid),
        wb=int_array(wb),
        wsign=int_array(wsign),
    )


def _rollup_statement(
    spec: Spec, a: dt.datetime, b: dt.datetime, th: list[dt.datetime]
) -> tuple[str, dict[str, Any]]:
    """Counts (name, val, b, v) of [a, b) (15-minute aligned) from a rollup: per member from
    `counts`, filtered or by a rolled-up property from `property_counts`."""
    params: dict[str, Any] = {"tenant": spec.tenant, "names": spec.names}
    if by_properties(spec):
        where, fparams = compile_filters(spec.filters, "f")
        params.update(fparams)
        table, columns, who = "property_counts", "name, props AS properties, n", "CAST(NULL AS text)"
        if spec.breakdown is not None:
            params["bkey"] = spec.breakdown
            who = "(properties ->> CAST(:bkey AS text))"
    else:
        table, columns, where = "counts", "name, person_id, n", "true"
        who = "person_id::text" if spec.breakdown == MEMBER else "CAST(NULL AS text)"
    _rollup_reads(a, b, th, params)
    return _rollup_sql(table, columns, who, where), params


@functools.lru_cache(maxsize=64)
def _rollup_sql(table: str, columns: str, who: str, where: str) -> str:
    # One text per shape: the driver prepares it once per connection.
    return _ROLLUP_SQL.format(
        table=table,
        columns=columns,
        who=who,
        where=where,
        th=THRESHOLDS,
        s=at_minute("s"),
        e=at_minute("e"),
        **{k: ints(k) for k in ("rg", "rs", "re", "wid", "wb", "wsign")},
    )


async def _rollup(
    uow: UnitOfWork,
    spec: Spec,
    rng: Range,
    a: dt.datetime,
    b: dt.datetime,
    th: list[dt.datetime],
    result: Result,
) -> bool:
    """Counts of `rng` into `result`: [a, b) (its 15-minute aligned inside) from a rollup, the
    slivers outside it from raw events, in one statement (one round trip). Returns whether
    raw events were read."""
    sql, params = _rollup_statement(spec, a, b, th)
    slivers = rng.start < a or b < rng.end
    if slivers:
        # Event counts, no top values: every raw row is (name, value, not other, bucket, count).
        raw_sql, raw_params = _raw_statement(
            spec, rng.start, rng.end, th, top=None, limit=None, skip=(a, b), th_text=params["th"]
        )
        params.update(raw_params)  # the same names for the same values (tenant, filters, key)
        sql = (
            f"SELECT name, val, b, v FROM ({sql}) AS r UNION ALL SELECT name, val, b, v FROM ({raw_sql}) AS w"
        )
    # Unpacked by position (a row's attributes are looked up by name each time), each count
    # added to its series and its total in one step.
    values, totals, zeros = result.values, result.totals, [0] * result.n
    for name, val, bucket, v in await fetch_rows(uow, sql, params):
        key = (name, val, False)
        series = values.get(key)
        if series is None:
            series = values[key] = zeros.copy()
        series[bucket] += int(v)
        totals[key] = totals.get(key, 0) + int(v)
    return slivers


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
    slivers = await _rollup(uow, spec, rng, inner_start, inner_end, th, result)
    result.path = "rollup+raw" if slivers else "rollup"
    return _top_in_python(result, spec, top)
