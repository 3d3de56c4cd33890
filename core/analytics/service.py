"""Analytics: ingest events, and answer trends, funnels and the business summary, for a person
(personal context) or an org (org context; per-member numbers for its owners and admins).

Every function here is the one place its rule lives; REST routes and MCP tools call them with
a `TenantContext` the database has just re-checked. Queries always filter on the context's
tenant (wall 1) and run under row-level security (wall 2).

Counting is exact everywhere. Event counts come from the 15-minute rollup for the whole
15-minute slots of a range and from raw events for the slivers at its edges; anything the
rollup cannot answer exactly (property filters or breakdowns, unique clients, funnels, revenue,
response times) is computed from the raw events of the tenant, through the index on
(tenant, name, time).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.analytics import mapping as m
from core.analytics import store
from core.analytics.filters import NUMERIC, PropertyFilter, compile_filters, parse_filters
from core.analytics.schemas import (
    BookingsOut,
    ContextOut,
    EventOut,
    FirstResponseOut,
    FunnelIn,
    FunnelOut,
    FunnelQueryOut,
    FunnelStepIn,
    FunnelStepOut,
    HourOut,
    IngestErrorOut,
    IngestOut,
    MemberRef,
    MemberSummaryOut,
    MessagesOut,
    PreviousOut,
    PreviousSummaryOut,
    RangeIn,
    RangeOut,
    RevenueOut,
    SummaryOut,
    TrendSeries,
    TrendsIn,
    TrendsOut,
    TrendsQueryOut,
)
from core.analytics.timebuckets import (
    Range,
    aligned,
    bucket_starts,
    ceil15,
    ceil_to,
    floor15,
    floor_to,
    resolve_range,
    zone,
)
from core.auth import utcnow
from core.context import Role, TenantContext, register_scopes
from core.errors import FieldIssue, PermissionDenied, Unavailable, ValidationFailed
from core.idempotency import idempotent_operation
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.uow import UnitOfWork

READ = "analytics:read"
INGEST = "analytics:ingest"
register_scopes(
    {
        READ: "read analytics: trends, funnels, the summary and raw events",
        INGEST: "send analytics events (brand sites, peer services)",
    }
)
MEMBER, SOURCE = "$member", "$source"
_WINDOW = re.compile(r"^\s*(\d{1,5})\s*(m|min|h|d|w)\s*$")
_WINDOW_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_WHERE = re.compile(r"\s+where\s+", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)


# --- shared helpers ---------------------------------------------------------------------------


def _context(ctx: TenantContext) -> ContextOut:
    if ctx.org_id is None:
        return ContextOut(kind="personal")
    return ContextOut(kind="org", org=ctx.org_slug, role=ctx.role.value if ctx.role else None)


def _context_text(ctx: TenantContext) -> str:
    return f"org {ctx.org_slug}" if ctx.org_id is not None else "personal context"


def _sees_members(ctx: TenantContext) -> bool:
    """Per-member numbers: yours in personal context; an org's for its owners and admins."""
    return ctx.org_id is None or ctx.role in (Role.OWNER, Role.ADMIN)


def _range_out(rng: Range) -> RangeOut:
    return RangeOut(
        start=rng.local(rng.start), end=rng.local(rng.end), time_zone=str(rng.tz.key), period=rng.period
    )


def _resolve(q: RangeIn, default: str = "last_30_days") -> Range:
    tz = zone(q.time_zone)
    # Whole seconds, rounded up: ranges echo back readably, and "up to now" includes an event
    # sent a moment ago.
    now = (utcnow() + dt.timedelta(seconds=1)).replace(microsecond=0)
    return resolve_range(tz, period=q.period, start=q.start, end=q.end, now=now, default=default)


def _check_name(name: str, field: str) -> str:
    if not (store.NAME_RE.match(name) or store.PLATFORM_NAME_RE.match(name)):
        raise ValidationFailed(
            f"{name!r} is not an event name",
            code="invalid_event_name",
            hint="names are like `page_view` (sent) or `bookings/booking.confirmed` (from the platform)",
            errors=[FieldIssue(field, "not an event name")],
        )
    return name


async def _limit_time(uow: UnitOfWork) -> None:
    ms = int(uow.db.settings.analytics_query_timeout_seconds * 1000)
    await uow.session.execute(text("SELECT set_config('statement_timeout', :v, true)"), {"v": f"{ms}ms"})


async def _rows(uow: UnitOfWork, sql: str, params: dict[str, Any]) -> list[Any]:
    try:
        return list((await uow.session.execute(text(sql), params)).all())
    except DBAPIError as err:
        if getattr(err.orig, "sqlstate", None) == "57014":
            raise Unavailable(
                "this analytics query took too long and was stopped",
                code="query_timeout",
                hint="narrow the range, use fewer filters or a coarser interval",
            ) from err
        raise


async def _members(uow: UnitOfWork, ids: set[str]) -> dict[str, MemberRef]:
    """Slugs of the members named by the tenant's own rows (persons the viewer may see)."""
    parsed = [uuid.UUID(i) for i in ids if i]
    refs = {str(i): MemberRef(id=i) for i in parsed}
    if parsed:
        found = await _rows(
            uow,
            "SELECT id, slug, display_name FROM platform.persons WHERE id = ANY(CAST(:ids AS uuid[]))",
            {"ids": parsed},
        )
        for row in found:
            refs[str(row.id)] = MemberRef(id=row.id, slug=row.slug, display_name=row.display_name)
    return refs


# --- ingest -----------------------------------------------------------------------------------


@idempotent_operation("analytics.ingest")
async def ingest(
    ctx: TenantContext,
    uow: UnitOfWork,
    events: list[Any] | store.RawBatch,
    single: bool = False,
    idempotency_key: str | None = None,
) -> IngestOut:
    """Record events for the current context: a batch of up to `analytics_max_batch`, or one
    (`single`: a bad event is then a 422 instead of an item error). Bad items are reported
    with a reason and the good ones kept; an id recorded before is a duplicate, never a second
    count. Events without an id get one derived from their content when they carry a
    timestamp (so resends match), else a random one."""
    ctx.require(INGEST)
    settings = uow.db.settings
    batch = events if isinstance(events, store.RawBatch) else None
    items: list[Any] = batch.events if batch is not None else cast(list[Any], events)
    if not items:
        raise ValidationFailed(
            "no events in the request",
            code="empty_batch",
            hint="send one event object, or {'events': [...]} with 1 to 10,000 events",
        )
    if len(items) > settings.analytics_max_batch:
        raise ValidationFailed(
            f"{len(items)} events in one request; the limit is {settings.analytics_max_batch}",
            code="batch_too_large",
            hint="split the batch",
            extra={"limit": settings.analytics_max_batch},
        )
    now = utcnow()
    oldest = now - dt.timedelta(days=settings.analytics_backfill_days)
    newest = now + dt.timedelta(seconds=settings.analytics_max_future_seconds)
    source = "api" if ctx.principal.api_key_id else "app"
    limits: dict[str, Any] = {
        "now": now,
        "oldest": oldest,
        "newest": newest,
        "max_props": settings.analytics_max_properties_bytes,
        "default_source": source,
    }

    if batch is not None:
        fast = store.fast_batch(batch, now=now, oldest=oldest, newest=newest, max_props=limits["max_props"])
        if fast is not None:
            await store.ensure_partitions(uow.db, fast.start, fast.end)
            accepted = await store.insert_json(
                uow, fast, now=now, source=source, person_id=ctx.person_id, org_id=ctx.org_id
            )
            if accepted is not None:
                return IngestOut(
                    context=_context(ctx),
                    accepted=accepted,
                    duplicates=0,
                    rejected=0,
                    errors=[],
                    duplicate_indexes=[],
                    id=None,
                )

    def parse() -> tuple[list[store.Row], list[store.ItemError]]:
        if batch is not None:
            # One event needs a precise reason (or was sent before): the per-item path,
            # reading the body as sent.
            return store.parse_items(json.loads(batch.body)["events"], **limits)
        return store.parse_items(items, **limits)

    # A big batch is tens of milliseconds of CPU: off the event loop, other requests' I/O
    # (another batch's commit, say) goes on meanwhile.
    parsed, errors = await asyncio.to_thread(parse) if len(items) > 1000 else parse()
    rows: list[store.Row] = []
    dup_in_batch: list[int] = []
    seen: set[str] = set()
    for row in parsed:
        if row.id in seen:
            dup_in_batch.append(row.idx)
        else:
            seen.add(row.id)
            rows.append(row)
    if single and errors:
        e = errors[0]
        raise ValidationFailed(
            f"the event was refused: {e.message}",
            code=e.code,
            hint="fix the field named in `errors` and send it again",
            errors=[FieldIssue(e.field or "event", e.message, e.code)],
        )
    stored = store.Stored(0, [])
    if rows:
        await store.ensure_partitions(uow.db, min(r.ts for r in rows), max(r.ts for r in rows))
        stored = await store.insert(uow, rows, person_id=ctx.person_id, org_id=ctx.org_id)
    duplicates = sorted(stored.duplicates + dup_in_batch)
    return IngestOut(
        context=_context(ctx),
        accepted=stored.accepted,
        duplicates=len(duplicates),
        rejected=len(errors),
        errors=[
            IngestErrorOut(index=e.index, id=e.id, code=e.code, message=e.message, field=e.field)
            for e in errors
        ],
        duplicate_indexes=duplicates,
        id=uuid.UUID(rows[0].id) if single and rows else None,
    )


# --- trends -----------------------------------------------------------------------------------

Key = tuple[str, str | None, bool]  # (event, breakdown value, is "other")


@dataclass
class _Spec:
    tenant: uuid.UUID
    names: list[str]
    measure: str
    filters: list[PropertyFilter]
    breakdown: str | None
    limit: int


@dataclass
class _Result:
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


_RAW_EVENTS = (
    "SELECT name, ts, client_id, {bval} AS bval FROM analytics.events"
    " WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND ts >= :start AND ts < :end"
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


async def _raw(
    uow: UnitOfWork,
    spec: _Spec,
    start: dt.datetime,
    end: dt.datetime,
    thresholds: list[dt.datetime],
    result: _Result,
    *,
    top: list[str | None] | None,
    limit: int | None,
) -> list[str | None] | None:
    """Raw events of [start, end) into `result`. With a breakdown: the given `top` values, or
    the top `limit` by measure, the rest as "other" (`limit` None: every value its own series).
    Returns the top values used."""
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
    ranked = spec.breakdown is not None and (top is not None or limit is not None)
    if ranked:
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
    else:
        sql = _RAW_PLAIN.format(events=events, bucket=_BUCKET_SQL, measure=measure, total=total, group=group)
    params.update(tenant=spec.tenant, names=spec.names, start=start, end=end, th=thresholds)
    if spec.breakdown is not None and spec.breakdown not in (MEMBER, SOURCE):
        params["bkey"] = spec.breakdown
    used: set[str | None] = set()
    for row in await _rows(uow, sql, params):
        value = int(row.v)
        if row.total:
            result.add((row.name, row.val, row.other), None, value)
        else:
            result.add((row.name, row.val, row.other), row.b, value)
            if not uniques:
                result.add((row.name, row.val, row.other), None, value)
        if not row.other:
            used.add(row.val)
    if ranked and top is None:
        return sorted(used, key=lambda v: (v is None, v or ""))
    return top


async def _rollup(
    uow: UnitOfWork,
    spec: _Spec,
    a: dt.datetime,
    b: dt.datetime,
    th: list[dt.datetime],
    result: _Result,
    *,
    hourly: bool,
) -> None:
    """Counts of [a, b) (15-minute aligned) from the rollup: hourly rows for its whole hours
    when every bucket starts on the hour, 15-minute rows for the rest."""
    inner_a, inner_b = (ceil_to(a, 60), floor_to(b, 60)) if hourly else (b, b)
    if inner_b <= inner_a:
        inner_a = inner_b = b
    member = spec.breakdown == MEMBER
    rows = await _rows(
        uow,
        "SELECT name, {who} AS val, width_bucket(bucket, CAST(:th AS timestamptz[])) - 1 AS b, sum(n) AS v"
        " FROM analytics.counts WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[]))"
        " AND ((grain = 60 AND bucket >= :ha AND bucket < :hb)"
        "   OR (grain = 15 AND ((bucket >= :a AND bucket < :ha) OR (bucket >= :hb AND bucket < :b))))"
        " GROUP BY 1, 2, 3".format(who="person_id::text" if member else "CAST(NULL AS text)"),
        {"tenant": spec.tenant, "names": spec.names, "a": a, "b": b, "ha": inner_a, "hb": inner_b, "th": th},
    )
    for row in rows:
        result.add((row.name, row.val, False), row.b, int(row.v))
        result.add((row.name, row.val, False), None, int(row.v))


def _top_in_python(result: _Result, spec: _Spec, top: list[str | None] | None) -> _Result:
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
    out = _Result(result.n, path=result.path, top=top)
    for key, series in result.values.items():
        name, val, _ = key
        target: Key = (name, val, False) if val in keep else (name, None, True)
        for b, v in enumerate(series):
            if v:
                out.add(target, b, v)
        out.add(target, None, result.totals.get(key, 0))
    return out


async def _compute(
    uow: UnitOfWork,
    spec: _Spec,
    rng: Range,
    th: list[dt.datetime],
    *,
    top: list[str | None] | None = None,
    use_rollup: bool = True,
) -> _Result:
    """One series set over `rng` bucketed by `th`: from the rollup for the whole 15-minute
    slots when it can answer exactly, from raw events for the rest (or for everything)."""
    result = _Result(len(th))
    rollup_ok = (
        use_rollup
        and spec.measure == "count"
        and not spec.filters
        and spec.breakdown in (None, MEMBER)
        and all(aligned(t) for t in th)
    )
    inner_start, inner_end = ceil15(rng.start), floor15(rng.end)
    if not rollup_ok or inner_end <= inner_start:
        result.top = await _raw(uow, spec, rng.start, rng.end, th, result, top=top, limit=spec.limit)
        result.path = "raw"
        return result
    hourly = all(aligned(t, 60) for t in th)
    await _rollup(uow, spec, inner_start, inner_end, th, result, hourly=hourly)
    edges = [(rng.start, inner_start), (inner_end, rng.end)]
    result.path = "rollup"
    for s, e in edges:
        if s < e:
            await _raw(uow, spec, s, e, th, result, top=None, limit=None)
            result.path = "rollup+raw"
    return _top_in_python(result, spec, top)


def _series(result: _Result, spec: _Spec, members: dict[str, MemberRef]) -> list[TrendSeries]:
    """Series in the order the events were asked for; within one, the largest first (ties by
    value), "other" last."""
    order = {name: i for i, name in enumerate(spec.names)}
    keys = set(result.values) | {(n, None, False) for n in spec.names if spec.breakdown is None}

    def sort_key(k: Key) -> tuple[int, bool, int, bool, str]:
        return (order.get(k[0], 99), k[2], -result.totals.get(k, 0), k[1] is None, k[1] or "")

    out: list[TrendSeries] = []
    for key in sorted(keys, key=sort_key):
        name, val, other = key
        out.append(
            TrendSeries(
                event=name,
                member=members.get(val) if spec.breakdown == MEMBER and val else None,
                untrusted_breakdown_value=None if spec.breakdown == MEMBER else val,
                is_other=other,
                total=result.totals.get(key, 0),
                values=result.values.get(key, [0] * result.n),
            )
        )
    return out


def _label(s: TrendSeries) -> str:
    if s.is_other:
        return "other"
    if s.member is not None:
        return s.member.slug or str(s.member.id)
    return "(none)" if s.untrusted_breakdown_value is None else repr(s.untrusted_breakdown_value)


def _trend_text(
    ctx: TenantContext,
    q: TrendsIn,
    rng: Range,
    series: list[TrendSeries],
    prev: list[TrendSeries] | None,
    filters: list[str],
) -> str:
    what = "distinct clients" if q.measure == "unique_clients" else "events"
    parts = []
    for name in q.events:
        mine = [s for s in series if s.event == name]
        # distinct clients of several series do not add up: quote the series instead
        summable = q.measure == "count" or not q.breakdown
        total = sum(s.total for s in mine)
        piece = f"{name}: {total} {what}" if summable else f"{name}: {what} per {q.breakdown}"
        if prev is not None and summable:
            before = sum(s.total for s in prev if s.event == name)
            change = f", {(total - before) / before * 100:+.1f}%" if before else ""
            piece += f" (previous period {before}{change})"
        if q.breakdown:
            piece += " — " + ", ".join(f"{_label(s)}: {s.total}" for s in mine[:6])
        parts.append(piece)
    return (
        f"{'; '.join(parts)}. Range {rng.local(rng.start)} to {rng.local(rng.end)} ({rng.tz.key}),"
        f" by {q.interval}, {_context_text(ctx)}, filters: {', '.join(filters) or 'none'}."
    )


async def trends(ctx: TenantContext, uow: UnitOfWork, q: TrendsIn) -> TrendsOut:
    """Count events (or distinct clients) per hour/day/week/month in a time zone, with property
    filters, an optional breakdown (top N + other) and the previous period for comparison."""
    ctx.require(READ)
    names = [_check_name(n, f"events.{i}") for i, n in enumerate(q.events)]
    if len(set(names)) != len(names):
        raise ValidationFailed("an event is listed twice", code="invalid_event_name", hint="list each once")
    filters = parse_filters(q.filters)
    breakdown = q.breakdown
    if breakdown is not None:
        if breakdown == MEMBER and not _sees_members(ctx):
            raise PermissionDenied(
                "per-member numbers are for the org's owners and admins",
                code="insufficient_role",
                hint="drop the `$member` breakdown to see the org's totals",
            )
        if breakdown.startswith("$") and breakdown not in (MEMBER, SOURCE):
            raise ValidationFailed(
                f"unknown breakdown {breakdown!r}",
                code="invalid_breakdown",
                hint="a property key, `$source`, or `$member`",
                errors=[FieldIssue("breakdown", "unknown special breakdown")],
            )
    rng = _resolve(q)
    th = bucket_starts(rng, q.interval)
    spec = _Spec(ctx.tenant_id, names, q.measure, filters, breakdown, q.breakdown_limit)
    await _limit_time(uow)
    current = await _compute(uow, spec, rng, th)
    previous: _Result | None = None
    prev_rng = rng.previous()
    prev_th: list[dt.datetime] = []
    if q.compare:
        prev_th = bucket_starts(prev_rng, q.interval, limit=None)
        previous = await _compute(uow, spec, prev_rng, prev_th, top=current.top)
    members: dict[str, MemberRef] = {}
    if breakdown == MEMBER:
        ids = {k[1] for r in (current, previous) if r for k in r.values if k[1]}
        members = await _members(uow, ids)
    series = _series(current, spec, members)
    prev_out: PreviousOut | None = None
    if previous is not None:
        prev_series = _series(previous, spec, members)
        prev_out = PreviousOut(
            range=_range_out(prev_rng), buckets=[prev_rng.local(t) for t in prev_th], series=prev_series
        )
    texts = [f.text() for f in filters]
    return TrendsOut(
        context=_context(ctx),
        query=TrendsQueryOut(
            events=names,
            measure=q.measure,
            interval=q.interval,
            range=_range_out(rng),
            filters=texts,
            breakdown=breakdown,
            breakdown_limit=q.breakdown_limit,
            compare=q.compare,
        ),
        buckets=[rng.local(t) for t in th],
        series=series,
        previous=prev_out,
        computed_from=current.path,
        text=_trend_text(ctx, q, rng, series, prev_out.series if prev_out else None, texts),
    )


# --- funnel -----------------------------------------------------------------------------------


def _window_seconds(raw: str) -> int:
    match = _WINDOW.match(raw.lower())
    seconds = int(match.group(1)) * _WINDOW_UNITS[match.group(2)] if match else 0
    if not 60 <= seconds <= 90 * 86400:
        raise ValidationFailed(
            f"window {raw!r} is not a duration between 1 minute and 90 days",
            code="invalid_window",
            hint="e.g. `30m`, `12h`, `14d`, `2w`",
            errors=[FieldIssue("window", "1m to 90d")],
        )
    return seconds


def _step(raw: str | FunnelStepIn, i: int) -> tuple[str, list[PropertyFilter]]:
    if isinstance(raw, FunnelStepIn):
        return _check_name(raw.event, f"steps.{i}"), parse_filters(raw.filters, f"steps.{i}.filters")
    head, *rest = _WHERE.split(raw.strip(), maxsplit=1)
    name = _check_name(head.strip(), f"steps.{i}")
    exprs = _AND.split(rest[0]) if rest else []
    return name, parse_filters([e for e in exprs if e.strip()], f"steps.{i}.filters")


def _funnel_sql(count: int, step_preds: list[str], names: list[str]) -> str:
    def after(k: int) -> str:
        # The same event again must be a later one; another event may share the instant.
        return ">" if names[k - 1] == names[k - 2] else ">="

    marks = ", ".join(f"({p}) AS m{k + 1}" for k, p in enumerate(step_preds))
    ctes = [
        f"ev AS MATERIALIZED (SELECT client_id, ts, {marks} FROM analytics.events"
        " WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND client_id IS NOT NULL"
        " AND ts >= :start AND ts < :horizon)",
        "s1 AS (SELECT client_id, min(ts) AS t1 FROM ev WHERE m1 AND ts < :end GROUP BY client_id)",
    ]
    for k in range(2, count + 1):
        prev_cols = ", ".join(f"s.t{j}" for j in range(1, k))
        ctes.append(
            f"s{k} AS (SELECT s.client_id, {prev_cols}, min(e.ts) AS t{k} FROM s{k - 1} s"
            f" JOIN ev e ON e.client_id = s.client_id AND e.m{k} AND e.ts {after(k)} s.t{k - 1}"
            f" AND e.ts <= s.t1 + make_interval(secs => :window)"
            f" GROUP BY s.client_id, {prev_cols})"
        )
    selects = [
        "SELECT 1 AS step, count(*) AS n, NULL::float8 AS from_prev, NULL::float8 AS from_start FROM s1"
    ]
    for k in range(2, count + 1):
        selects.append(
            f"SELECT {k}, count(*),"
            f" percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t{k} - t{k - 1})),"
            f" percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t{k} - t1)) FROM s{k}"
        )
    return "WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL ".join(selects) + "\nORDER BY 1"


async def funnel(ctx: TenantContext, uow: UnitOfWork, q: FunnelIn) -> FunnelOut:
    """Clients who did step 1 in the range, then each next step in order, all within the
    window from their first step 1: counts, conversion, median time to convert."""
    ctx.require(READ)
    steps = [_step(s, i) for i, s in enumerate(q.steps)]
    for i in range(1, len(steps)):
        if steps[i][0] == steps[i - 1][0] and [f.text() for f in steps[i][1]] == [
            f.text() for f in steps[i - 1][1]
        ]:
            raise ValidationFailed(
                "two consecutive steps are the same event with the same filters",
                code="invalid_funnel",
                hint="each step must differ from the one before it",
                errors=[FieldIssue(f"steps.{i}", "same as the previous step")],
            )
    window = _window_seconds(q.window)
    rng = _resolve(q)
    preds: list[str] = []
    params: dict[str, Any] = {}
    for k, (name, filters) in enumerate(steps):
        where, p = compile_filters(filters, f"s{k}")
        params.update(p)
        params[f"n{k}"] = name
        preds.append(f"name = CAST(:n{k} AS text) AND {where}")
    params.update(
        tenant=ctx.tenant_id,
        names=sorted({n for n, _ in steps}),
        start=rng.start,
        end=rng.end,
        horizon=rng.end + dt.timedelta(seconds=window),
        window=window,
    )
    await _limit_time(uow)
    rows = await _rows(uow, _funnel_sql(len(steps), preds, [n for n, _ in steps]), params)
    counts = [int(r.n) for r in rows]
    labels = [_step_label(n, f) for n, f in steps]
    out_steps: list[FunnelStepOut] = []
    for k, row in enumerate(rows):
        first, prev = counts[0], counts[k - 1] if k else None
        out_steps.append(
            FunnelStepOut(
                step=k + 1,
                event=steps[k][0],
                filters=[f.text() for f in steps[k][1]],
                clients=counts[k],
                conversion_from_start=(counts[k] / first if first else None)
                if k
                else (1.0 if first else None),
                conversion_from_previous=(counts[k] / prev if prev else None) if k else None,
                median_seconds_from_previous=row.from_prev,
                median_seconds_from_start=row.from_start,
            )
        )
    conversion = counts[-1] / counts[0] if counts[0] else None
    median = out_steps[-1].median_seconds_from_start
    text_out = (
        f"Funnel {' → '.join(labels)} within {q.window}: "
        + ", ".join(f"{s.clients}" for s in out_steps)
        + " clients"
        + (f"; {conversion * 100:.1f}% converted" if conversion is not None else "; nobody entered")
        + (f", median time to convert {_duration(median)}" if median is not None else "")
        + f". Entry range {rng.local(rng.start)} to {rng.local(rng.end)} ({rng.tz.key}),"
        + f" {_context_text(ctx)}."
    )
    return FunnelOut(
        context=_context(ctx),
        query=FunnelQueryOut(steps=labels, window=q.window, window_seconds=window, range=_range_out(rng)),
        steps=out_steps,
        conversion=conversion,
        median_seconds_to_convert=median,
        text=text_out,
    )


def _step_label(name: str, filters: list[PropertyFilter]) -> str:
    return name + (" where " + " and ".join(f.text() for f in filters) if filters else "")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- summary ----------------------------------------------------------------------------------

_BOOKINGS = {
    "requested": m.BOOKING_REQUESTED,
    "confirmed": m.BOOKING_CONFIRMED,
    "cancelled": m.BOOKING_CANCELLED,
    "completed": m.BOOKING_COMPLETED,
    "no_show": m.BOOKING_NO_SHOW,
}
_ACTIVITY = (m.MESSAGE_RECEIVED, m.BOOKING_REQUESTED, m.BOOKING_CONFIRMED)
_AMOUNT = NUMERIC.format(k=f"'{m.AMOUNT}'")
_REVENUE_SQL = f"""
SELECT name, person_id::text AS member, properties ->> '{m.CURRENCY}' AS currency, sum({_AMOUNT}) AS amount
  FROM analytics.events
 WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND ts >= :start AND ts < :end
 GROUP BY 1, 2, 3
"""
_FIRST_RESPONSE_SQL = f"""
WITH r AS (
  SELECT properties ->> '{m.THREAD}' AS thread, min(ts) AS t FROM analytics.events
   WHERE tenant_id = :tenant AND name = :received AND ts >= :start AND ts < :end
     AND properties ? '{m.THREAD}'
   GROUP BY 1
),
s AS (
  SELECT properties ->> '{m.THREAD}' AS thread, ts FROM analytics.events
   WHERE tenant_id = :tenant AND name = :sent AND ts >= :start AND ts < :end
     AND properties ? '{m.THREAD}'
),
firsts AS (SELECT r.thread, r.t, min(s.ts) AS reply FROM r LEFT JOIN s ON s.thread = r.thread AND s.ts >= r.t
            GROUP BY r.thread, r.t)
SELECT count(*) AS conversations, count(reply) AS answered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM reply - t)) AS median
  FROM firsts
"""


def _revenue(rows: list[Any], member: str | None = None) -> list[RevenueOut]:
    by_currency: dict[str | None, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    kinds = {
        m.BOOKING_CONFIRMED: "booked",
        m.BOOKING_COMPLETED: "completed",
        m.BOOKING_CANCELLED: "cancelled",
    }
    for row in rows:
        if member is not None and row.member != member:
            continue
        if row.amount is not None:
            by_currency[row.currency][kinds[row.name]] += float(row.amount)
    return [
        RevenueOut(currency=c, booked=v["booked"], completed=v["completed"], cancelled=v["cancelled"])
        for c, v in sorted(by_currency.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]


async def _totals(
    uow: UnitOfWork, tenant: uuid.UUID, rng: Range, names: list[str], by_member: bool
) -> _Result:
    spec = _Spec(tenant, names, "count", [], MEMBER if by_member else None, 10_000)
    return await _compute(uow, spec, rng, [floor15(rng.start)])


def _total(result: _Result, name: str, member: str | None = None) -> int:
    return sum(
        v for (n, val, _), v in result.totals.items() if n == name and (member is None or val == member)
    )


async def summary(ctx: TenantContext, uow: UnitOfWork, q: RangeIn) -> SummaryOut:
    """How the business is doing over a range: bookings, revenue from bookings, messages in and
    out, median first-response time, busiest hours; per member for an org's owners/admins."""
    ctx.require(READ)
    rng = _resolve(q)
    prev_rng = rng.previous()
    by_member = _sees_members(ctx) and ctx.org_id is not None
    names = sorted({*_BOOKINGS.values(), m.MESSAGE_RECEIVED, m.MESSAGE_SENT})
    await _limit_time(uow)
    now_counts = await _totals(uow, ctx.tenant_id, rng, names, by_member)
    prev_counts = await _totals(uow, ctx.tenant_id, prev_rng, names, False)
    rev_names = [m.BOOKING_CONFIRMED, m.BOOKING_COMPLETED, m.BOOKING_CANCELLED]
    revenue_rows = await _rows(
        uow, _REVENUE_SQL, {"tenant": ctx.tenant_id, "names": rev_names, "start": rng.start, "end": rng.end}
    )
    prev_revenue_rows = await _rows(
        uow,
        _REVENUE_SQL,
        {"tenant": ctx.tenant_id, "names": rev_names, "start": prev_rng.start, "end": prev_rng.end},
    )
    fr = (
        await _rows(
            uow,
            _FIRST_RESPONSE_SQL,
            {
                "tenant": ctx.tenant_id,
                "received": m.MESSAGE_RECEIVED,
                "sent": m.MESSAGE_SENT,
                "start": rng.start,
                "end": rng.end,
            },
        )
    )[0]
    # Busiest hours: hourly buckets in the zone, folded onto the hour of the day.
    hourly = bucket_starts(rng, "hour", limit=None)
    activity = await _compute(uow, _Spec(ctx.tenant_id, list(_ACTIVITY), "count", [], None, 1), rng, hourly)
    per_hour: dict[int, int] = defaultdict(int)
    for series in activity.values.values():
        for b, v in enumerate(series):
            per_hour[hourly[b].astimezone(rng.tz).hour] += v
    busiest = sorted((h for h in per_hour if per_hour[h]), key=lambda h: (-per_hour[h], h))[:3]

    def bookings(result: _Result, member: str | None = None) -> BookingsOut:
        return BookingsOut(**{k: _total(result, n, member) for k, n in _BOOKINGS.items()})

    def messages(result: _Result, member: str | None = None) -> MessagesOut:
        return MessagesOut(
            received=_total(result, m.MESSAGE_RECEIVED, member), sent=_total(result, m.MESSAGE_SENT, member)
        )

    members_out: list[MemberSummaryOut] | None = None
    if by_member:
        ids = {k[1] for k in now_counts.values if k[1]} | {r.member for r in revenue_rows if r.member}
        refs = await _members(uow, ids)
        members_out = [
            MemberSummaryOut(
                member=refs[i],
                bookings_confirmed=_total(now_counts, m.BOOKING_CONFIRMED, i),
                bookings_completed=_total(now_counts, m.BOOKING_COMPLETED, i),
                messages_received=_total(now_counts, m.MESSAGE_RECEIVED, i),
                messages_sent=_total(now_counts, m.MESSAGE_SENT, i),
                revenue=_revenue(revenue_rows, i),
            )
            for i in sorted(refs, key=lambda i: (refs[i].slug is None, refs[i].slug or "", i))
        ]
    out_bookings, out_messages, revenue = bookings(now_counts), messages(now_counts), _revenue(revenue_rows)
    first_response = FirstResponseOut(
        median_seconds=fr.median, conversations=int(fr.conversations), answered=int(fr.answered)
    )
    money = (
        ", ".join(f"{r.booked:.2f} {r.currency or '(no currency)'} booked" for r in revenue) or "no revenue"
    )
    text_out = (
        f"From {rng.local(rng.start)} to {rng.local(rng.end)} ({rng.tz.key}), {_context_text(ctx)}:"
        f" {out_bookings.confirmed} bookings confirmed ({_total(prev_counts, m.BOOKING_CONFIRMED)} the period"
        f" before), {out_bookings.completed} completed, {out_bookings.cancelled} cancelled; {money};"
        f" {out_messages.received} messages received, {out_messages.sent} sent;"
        + (
            f" median first response {_duration(first_response.median_seconds)}"
            f" ({first_response.answered} of {first_response.conversations} conversations answered)"
            if first_response.median_seconds is not None
            else f" no answered conversation ({first_response.conversations} started)"
        )
        + (f"; busiest hours {', '.join(f'{h:02d}:00' for h in busiest)}." if busiest else ".")
    )
    return SummaryOut(
        context=_context(ctx),
        range=_range_out(rng),
        bookings=out_bookings,
        revenue=revenue,
        messages=out_messages,
        first_response=first_response,
        busiest_hours=[HourOut(hour=h, events=per_hour[h]) for h in busiest],
        members=members_out,
        previous=PreviousSummaryOut(
            range=_range_out(prev_rng),
            bookings=bookings(prev_counts),
            messages=messages(prev_counts),
            revenue=_revenue(prev_revenue_rows),
        ),
        text=text_out,
    )


# --- raw events -------------------------------------------------------------------------------


async def list_events(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    name: str | None = None,
    client_id: str | None = None,
    q: RangeIn | None = None,
) -> Page[EventOut]:
    """The context's raw events, newest first (keyset pagination), for debugging what was
    recorded. Defaults to the last 7 days."""
    ctx.require(READ)
    rng = _resolve(q or RangeIn(), default="last_7_days")
    params: dict[str, Any] = {
        "tenant": ctx.tenant_id,
        "start": rng.start,
        "end": rng.end,
        "limit": page.limit + 1,
    }
    where = ["tenant_id = :tenant", "ts >= :start", "ts < :end"]
    if name:
        params["name"] = _check_name(name, "name")
        where.append("name = :name")
    if client_id:
        params["client"] = client_id
        where.append("client_id = :client")
    if page.cursor:
        ts, eid = decode_cursor(page.cursor, 2)
        if not isinstance(ts, dt.datetime) or not isinstance(eid, uuid.UUID):
            raise ValidationFailed("the cursor is not valid for this list", code="invalid_cursor")
        params.update(cts=ts, cid=eid)
        where.append("(ts, id) < (:cts, :cid)")
    await _limit_time(uow)
    rows = await _rows(
        uow,
        "SELECT id, name, ts, client_id, source, person_id, received_at, properties FROM analytics.events"
        f" WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT :limit",
        params,
    )
    show_member = _sees_members(ctx)
    items = [
        EventOut(
            id=r.id,
            name=r.name,
            timestamp=r.ts,
            client_id=r.client_id,
            source=r.source,
            member_id=r.person_id if show_member else None,
            received_at=r.received_at,
            untrusted_properties=r.properties if isinstance(r.properties, dict) else json.loads(r.properties),
        )
        for r in rows[: page.limit]
    ]
    more = len(rows) > page.limit
    return Page[EventOut](
        items=items, next_cursor=encode_cursor(items[-1].timestamp, items[-1].id) if more and items else None
    )
