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

import bisect
import datetime as dt
import functools
import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from core.analytics._queries import fetch_rows
from core.analytics.client_sets import unique_clients
from core.analytics.filters import PropertyFilter, compile_filters
from core.analytics.models import GRAINS, ROLLUP_PROPERTIES
from core.analytics.policy import MEMBER, SOURCE
from core.analytics.timebuckets import EPOCH, Range, aligned, ceil15, floor15
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
) -> tuple[str, dict[str, Any]]:
    """The statement of `_raw` and its parameters."""
    sql, params = _raw_sql(spec, top, limit, slivers=skip is not None)
    params.update(tenant=spec.tenant, names=spec.names, start=start, end=end, th=thresholds)
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


Piece = tuple[int, dt.datetime, dt.datetime, int]  # (grain, start, end, +1 or -1)
_Run = tuple[int, int, int, int]  # a piece in minutes since EPOCH


_DESCENT = 4  # an index descent costs about as much as reading this many rows


def _cost(pieces: tuple[_Run, ...]) -> int:
    """Rollup rows read per member and event, plus an index descent per piece."""
    return sum((e - s) // g + _DESCENT for g, s, e, _ in pieces)


def _signed(a: int, b: int, grains: tuple[int, ...]) -> tuple[_Run, ...]:
    """[a, b) (minutes since EPOCH, on the finest grain's grid) as signed runs of whole buckets,
    the fewest rows: whole coarse buckets inside and finer ones at the edges (a year by UTC
    week reads 365 daily rows, not 35,040 quarter hours), or coarse buckets reaching past an
    edge less the finer ones past it (a Paris day, 23:00 to 23:00 UTC, is an hour plus a UTC
    day less an hour: 3 rows, not 24). Counts add up, so every such sum is exact."""
    if a >= b:
        return ()
    shift = a - a % grains[0]  # every grain divides the coarsest: the same shape a day later
    return tuple((g, s + shift, e + shift, sign) for g, s, e, sign in _shape(a - shift, b - shift, grains))


@functools.lru_cache(maxsize=4096)
def _shape(a: int, b: int, grains: tuple[int, ...]) -> tuple[_Run, ...]:
    g, finer = grains[0], grains[1:]
    if not finer:
        return ((g, a, b, 1),)
    best = _signed(a, b, finer)

    def less(pieces: tuple[_Run, ...]) -> tuple[_Run, ...]:
        return tuple((pg, ps, pe, -sign) for pg, ps, pe, sign in pieces)

    lo, hi = a - a % g, b + (-b) % g
    lefts = (
        (lo if lo == a else lo + g, _signed(a, lo + g, finer) if lo < a else ()),
        (lo, less(_signed(lo, a, finer))),
    )
    rights = ((b - b % g, _signed(b - b % g, b, finer)), (hi, less(_signed(b, hi, finer))))
    for start, left in lefts:
        for end, right in rights:
            if start < end:
                candidate = (*left, (g, start, end, 1), *right)
                if _cost(candidate) < _cost(best):
                    best = candidate
    return best


def _bucket_pieces(a: dt.datetime, b: dt.datetime, th: list[dt.datetime]) -> list[tuple[Piece, int]]:
    """The signed pieces of each bucket's part of [a, b) (bucket starts `th` on the 15-minute
    grid), with the bucket's index — or -1 for a piece whose rows all start inside its bucket,
    so find their bucket themselves: such pieces of one grain that touch merge into one index
    range (a week by hour is one range of hourly rows, not 168; 90 Paris days read their UTC
    days as one range, not 90)."""
    minute = dt.timedelta(minutes=1)
    edges = [a, *(t for t in th if a < t < b), b]
    grains = tuple(sorted(GRAINS, reverse=True))
    out: list[tuple[Piece, int]] = []
    own: list[Piece] = []
    for u, v in itertools.pairwise(edges):
        index = bisect.bisect_right(th, u) - 1
        for g, s, e, sign in _signed((u - EPOCH) // minute, (v - EPOCH) // minute, grains):
            start, end = EPOCH + s * minute, EPOCH + e * minute
            # A row may reach past the bucket's end (a UTC day of a Paris day, less its last
            # hour in a piece of its own): what places it is where it starts.
            if sign > 0 and start >= u and end - g * minute < v:
                own.append((g, start, end, 1))
            else:
                out.append(((g, start, end, sign), index))
    merged: list[Piece] = []
    for g, start, end, _ in sorted(own):
        if merged and merged[-1][0] == g and merged[-1][2] == start:
            merged[-1] = (g, merged[-1][1], end, 1)
        else:
            merged.append((g, start, end, 1))
    return out + [(p, -1) for p in merged]


# A piece of at most this many rows is read with its neighbours: the rows of all such pieces
# are looked up once each (a row may count in two buckets: +1 in one, -1 in the one before),
# and rows next to each other as one index range. A Paris day's edge hours are then one range
# a day for both the day that ends and the day that starts there, not two per day. Longer
# pieces stay ranges of their own: joining many rows to their buckets costs more than reading
# them twice (the 10 edge hours of a day at +10:30, measured).
_ROWS_APART = 4
_LOOKUP = (
    "SELECT grain, bucket, {columns} FROM analytics.{table} WHERE tenant_id = :tenant AND grain = {grain}"
    " AND name = ANY(CAST(:names AS text[])) AND {where}"
)


def _rollup_rows(
    table: str, columns: str, a: dt.datetime, b: dt.datetime, th: list[dt.datetime], params: dict[str, Any]
) -> str:
    """The rollup rows covering [a, b), each with its bucket index `b` and sign `sign`, from the
    signed pieces (`_bucket_pieces`). A long piece is an index range, read by a lateral join over
    the pieces passed as arrays. The rows of short ones (a Paris day's edge hours) are read once
    each and joined to their buckets and signs: single rows by their starts, one index scan
    per grain; adjacent rows as an index range each, by a second lateral join. Every scan is an
    index-only scan of the primary key, which carries the counts; each costs an index descent
    per event name, so the fewer the better."""
    # The short pieces' rows in minutes since EPOCH (integers: this runs for every row).
    minute = dt.timedelta(minutes=1)
    th_minutes = [(t - EPOCH) // minute for t in th]
    ranges: list[tuple[Piece, int]] = []
    weights: dict[tuple[int, int, int], int] = defaultdict(int)
    for piece, index in _bucket_pieces(a, b, th):
        g, start, end, sign = piece
        if end - start > _ROWS_APART * g * minute:
            ranges.append((piece, index))
            continue
        for t in range((start - EPOCH) // minute, (end - EPOCH) // minute, g):
            weights[(g, t, index if index >= 0 else bisect.bisect_right(th_minutes, t) - 1)] += sign
    rows = [(key, sign) for key, sign in weights.items() if sign]
    runs: list[list[int]] = []  # [grain, start, end]
    for g, t in sorted({(g, t) for (g, t, _), _ in rows}):
        if runs and runs[-1][0] == g and runs[-1][2] == t:
            runs[-1][2] = t + g
        else:
            runs.append([g, t, t + g])
    at = {t: EPOCH + t * minute for t in {t for run in runs for t in run[1:]} | {k[1] for k, _ in rows}}
    singles: dict[int, list[dt.datetime]] = {g: [] for g in GRAINS}
    multi: list[tuple[int, dt.datetime, dt.datetime]] = []
    for g, s, e in runs:
        if e - s == g:
            singles[g].append(at[s])
        else:
            multi.append((g, at[s], at[e]))
    lookup = functools.partial(_LOOKUP.format, columns=columns, table=table)
    # OFFSET 0 keeps a subquery a lateral one: flattened, the planner hashes the pieces and
    # scans the tenant's whole rollup instead of one index range per piece.
    in_range = lookup(grain="p.grain", where="bucket >= p.s AND bucket < p.e") + " OFFSET 0"
    # Only the parts a range needs: each scan, even of nothing, costs its planning and startup
    # (a one-hour trend has a single range).
    parts = []
    if ranges:
        params.update(
            th=th,
            pg=[p[0] for p, _ in ranges],
            ps=[p[1] for p, _ in ranges],
            pe=[p[2] for p, _ in ranges],
            psign=[p[3] for p, _ in ranges],
            pb=[i for _, i in ranges],
        )
        parts.append(
            "SELECT r.*, p.sign,"
            " CASE WHEN p.b < 0 THEN width_bucket(r.bucket, CAST(:th AS timestamptz[])) - 1 ELSE p.b END AS b"
            " FROM unnest(CAST(:pg AS smallint[]), CAST(:ps AS timestamptz[]),"
            " CAST(:pe AS timestamptz[]), CAST(:psign AS integer[]), CAST(:pb AS integer[]))"
            f" AS p(grain, s, e, sign, b) CROSS JOIN LATERAL ({in_range}) AS r"
        )
    if rows:
        params.update(
            wg=[k[0] for k, _ in rows],
            ws=[at[k[1]] for k, _ in rows],
            wb=[k[2] for k, _ in rows],
            wsign=[sign for _, sign in rows],
        )
        short = []
        if multi:
            params.update(rg=[r[0] for r in multi], rs=[r[1] for r in multi], re=[r[2] for r in multi])
            short.append(
                "SELECT r.* FROM unnest(CAST(:rg AS smallint[]), CAST(:rs AS timestamptz[]),"
                f" CAST(:re AS timestamptz[])) AS p(grain, s, e) CROSS JOIN LATERAL ({in_range}) AS r"
            )
        for g, starts in singles.items():
            if starts:
                params[f"rows_{g}"] = starts
                short.append(lookup(grain=g, where=f"bucket = ANY(CAST(:rows_{g} AS timestamptz[]))"))
        parts.append(
            f"SELECT r.*, w.sign, w.b FROM ({' UNION ALL '.join(short)}) AS r"
            " JOIN unnest(CAST(:wg AS smallint[]), CAST(:ws AS timestamptz[]), CAST(:wsign AS integer[]),"
            " CAST(:wb AS integer[])) AS w(grain, s, sign, b) ON w.grain = r.grain AND w.s = r.bucket"
        )
    return f"({' UNION ALL '.join(parts)})"


def _rollup_statement(
    spec: Spec, a: dt.datetime, b: dt.datetime, th: list[dt.datetime]
) -> tuple[str, dict[str, Any]]:
    """Counts (name, val, b, v) of [a, b) (15-minute aligned) from a rollup: per member from
    `counts`, filtered or by a rolled-up property from `property_counts`."""
    params: dict[str, Any] = {"tenant": spec.tenant, "names": spec.names}
    if by_properties(spec):
        where, fparams = compile_filters(spec.filters, "f")
        params.update(fparams)
        who = "CAST(NULL AS text)"
        if spec.breakdown is not None:
            params["bkey"] = spec.breakdown
            who = "(properties ->> CAST(:bkey AS text))"
        ranges = _rollup_rows("property_counts", "name, props AS properties, n", a, b, th, params)
        source = f"{ranges} AS r WHERE {where}"
    else:
        who = "person_id::text" if spec.breakdown == MEMBER else "CAST(NULL AS text)"
        source = _rollup_rows("counts", "name, person_id, n", a, b, th, params) + " AS r"
    # A group netting to zero (its events all in rows subtracted again) is no group.
    sql = (
        f"SELECT name, {who} AS val, b, sum(n * sign) AS v FROM {source} GROUP BY 1, 2, 3"
        " HAVING sum(n * sign) <> 0"
    )
    return sql, params


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
        raw_sql, raw_params = _raw_statement(spec, rng.start, rng.end, th, top=None, limit=None, skip=(a, b))
        params.update(raw_params)  # the same names for the same values (tenant, filters, key)
        sql = (
            f"SELECT name, val, b, v FROM ({sql}) AS r UNION ALL SELECT name, val, b, v FROM ({raw_sql}) AS w"
        )
    for row in await fetch_rows(uow, sql, params):
        result.add((row.name, row.val, False), row.b, int(row.v))
        result.add((row.name, row.val, False), None, int(row.v))
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
