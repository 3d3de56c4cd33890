"""Trends: events or distinct clients per bucket in a time zone, with property filters, a
breakdown (top N + other, or per member) and the previous period for comparison."""

from __future__ import annotations

import datetime as dt

from core.analytics._queries import limit_time, members, resolve
from core.analytics.counting import Key, Result, Spec, compute
from core.analytics.filters import PropertyFilter, parse_filters
from core.analytics.policy import MEMBER, READ, SOURCE, check_name, sees_members
from core.analytics.presenters import context_out, context_text, range_out
from core.analytics.schemas import (
    MemberRef,
    PreviousOut,
    TrendSeries,
    TrendsIn,
    TrendsOut,
    TrendsQueryOut,
)
from core.analytics.timebuckets import Range, bucket_starts
from core.context import TenantContext
from core.errors import FieldIssue, PermissionDenied, ValidationFailed
from core.presenting import from_row
from core.uow import UnitOfWork


async def trends(ctx: TenantContext, uow: UnitOfWork, q: TrendsIn) -> TrendsOut:
    """Count events (or distinct clients) per hour/day/week/month in a time zone, with property
    filters, an optional breakdown (top N + other) and the previous period for comparison."""
    ctx.require(READ)
    names, filters = _checked_query(ctx, q)
    rng = resolve(q)
    th = bucket_starts(rng, q.interval)
    spec = Spec(ctx.tenant_id, names, q.measure, filters, q.breakdown, q.breakdown_limit)
    await limit_time(uow)
    current = await compute(uow, spec, rng, th)
    previous: Result | None = None
    prev_rng = rng.previous()
    prev_th: list[dt.datetime] = []
    if q.compare:
        prev_th = bucket_starts(prev_rng, q.interval, limit=None)
        previous = await compute(uow, spec, prev_rng, prev_th, top=current.top)
    refs: dict[str, MemberRef] = {}
    if q.breakdown == MEMBER:
        ids = {k[1] for r in (current, previous) if r for k in r.values if k[1]}
        refs = await members(uow, ids)
    series = _series(current, spec, refs)
    prev_out: PreviousOut | None = None
    if previous is not None:
        prev_out = PreviousOut(
            range=range_out(prev_rng),
            buckets=[prev_rng.local(t) for t in prev_th],
            series=_series(previous, spec, refs),
        )
    texts = [f.text() for f in filters]
    return TrendsOut(
        context=context_out(ctx),
        query=_query_out(q, names, rng, texts),
        buckets=[rng.local(t) for t in th],
        series=series,
        previous=prev_out,
        computed_from=current.path,
        text=_trend_text(ctx, q, rng, series, prev_out.series if prev_out else None, texts),
    )


def _checked_query(ctx: TenantContext, q: TrendsIn) -> tuple[list[str], list[PropertyFilter]]:
    """The events (each a valid name, listed once) and the filters; the breakdown checked."""
    names = [check_name(n, f"events.{i}") for i, n in enumerate(q.events)]
    if len(set(names)) != len(names):
        raise ValidationFailed("an event is listed twice", code="invalid_event_name", hint="list each once")
    filters = parse_filters(q.filters)
    _check_breakdown(ctx, q.breakdown)
    return names, filters


def _check_breakdown(ctx: TenantContext, breakdown: str | None) -> None:
    if breakdown is None:
        return
    if breakdown == MEMBER and not sees_members(ctx):
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


def _query_out(q: TrendsIn, names: list[str], rng: Range, filters: list[str]) -> TrendsQueryOut:
    # The query as answered: the request's own choices, with what was resolved from it.
    return from_row(TrendsQueryOut, q, events=names, range=range_out(rng), filters=filters)


def _series(result: Result, spec: Spec, members: dict[str, MemberRef]) -> list[TrendSeries]:
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
        f" by {q.interval}, {context_text(ctx)}, filters: {', '.join(filters) or 'none'}."
    )
