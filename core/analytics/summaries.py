"""The business summary: bookings, revenue from bookings, messages in and out, median
first-response time and busiest hours over a range, against the period before; per member for
an org's owners and admins."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from core.analytics import mapping as m
from core.analytics._queries import fetch_rows, limit_time, members, resolve
from core.analytics.counting import Result, Spec, compute
from core.analytics.filters import NUMERIC
from core.analytics.policy import MEMBER, READ, sees_members
from core.analytics.presenters import context_out, context_text, duration, range_out
from core.analytics.schemas import (
    BookingsOut,
    FirstResponseOut,
    HourOut,
    MemberSummaryOut,
    MessagesOut,
    PreviousSummaryOut,
    RangeIn,
    RevenueOut,
    SummaryOut,
)
from core.analytics.timebuckets import Range, bucket_starts, floor15
from core.context import TenantContext
from core.money import in_currency
from core.uow import UnitOfWork

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
    by_currency: dict[str | None, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    kinds = {
        m.BOOKING_CONFIRMED: "booked",
        m.BOOKING_COMPLETED: "completed",
        m.BOOKING_CANCELLED: "cancelled",
    }
    for row in rows:
        if member is not None and row.member != member:
            continue
        if row.amount is not None:
            by_currency[row.currency][kinds[row.name]] += Decimal(row.amount)
    return [
        RevenueOut(currency=c, **{k: _written(v[k], c) for k in kinds.values()})
        for c, v in sorted(by_currency.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]


def _written(amount: Decimal, currency: str | None) -> Decimal:
    # An amount is exact, with its currency's decimals (45.00 EUR, 1500 JPY), never a float's 100.49999.
    return in_currency(amount, currency) if currency else amount


async def _totals(
    uow: UnitOfWork, tenant: uuid.UUID, rng: Range, names: list[str], by_member: bool
) -> Result:
    spec = Spec(tenant, names, "count", [], MEMBER if by_member else None, 10_000)
    return await compute(uow, spec, rng, [floor15(rng.start)])


def _total(result: Result, name: str, member: str | None = None) -> int:
    return sum(
        v for (n, val, _), v in result.totals.items() if n == name and (member is None or val == member)
    )


async def summary(ctx: TenantContext, uow: UnitOfWork, q: RangeIn) -> SummaryOut:
    """How the business is doing over a range: bookings, revenue from bookings, messages in and
    out, median first-response time, busiest hours; per member for an org's owners/admins."""
    ctx.require(READ)
    rng = resolve(q)
    prev_rng = rng.previous()
    by_member = sees_members(ctx) and ctx.org_id is not None
    names = sorted({*_BOOKINGS.values(), m.MESSAGE_RECEIVED, m.MESSAGE_SENT})
    await limit_time(uow)
    now_counts = await _totals(uow, ctx.tenant_id, rng, names, by_member)
    prev_counts = await _totals(uow, ctx.tenant_id, prev_rng, names, False)
    revenue_rows = await _revenue_rows(uow, ctx.tenant_id, rng)
    prev_revenue_rows = await _revenue_rows(uow, ctx.tenant_id, prev_rng)
    first_response = await _first_response(uow, ctx.tenant_id, rng)
    per_hour = await _per_hour(uow, ctx.tenant_id, rng)
    busiest = sorted((h for h in per_hour if per_hour[h]), key=lambda h: (-per_hour[h], h))[:3]
    members_out = await _members_out(uow, now_counts, revenue_rows) if by_member else None
    out_bookings, out_messages, revenue = _bookings(now_counts), _messages(now_counts), _revenue(revenue_rows)
    return SummaryOut(
        context=context_out(ctx),
        range=range_out(rng),
        bookings=out_bookings,
        revenue=revenue,
        messages=out_messages,
        first_response=first_response,
        busiest_hours=[HourOut(hour=h, events=per_hour[h]) for h in busiest],
        members=members_out,
        previous=PreviousSummaryOut(
            range=range_out(prev_rng),
            bookings=_bookings(prev_counts),
            messages=_messages(prev_counts),
            revenue=_revenue(prev_revenue_rows),
        ),
        text=_summary_text(
            ctx,
            rng,
            out_bookings,
            _total(prev_counts, m.BOOKING_CONFIRMED),
            revenue,
            out_messages,
            first_response,
            busiest,
        ),
    )


async def _revenue_rows(uow: UnitOfWork, tenant: uuid.UUID, rng: Range) -> list[Any]:
    names = [m.BOOKING_CONFIRMED, m.BOOKING_COMPLETED, m.BOOKING_CANCELLED]
    return await fetch_rows(
        uow, _REVENUE_SQL, {"tenant": tenant, "names": names, "start": rng.start, "end": rng.end}
    )


async def _first_response(uow: UnitOfWork, tenant: uuid.UUID, rng: Range) -> FirstResponseOut:
    params = {
        "tenant": tenant,
        "received": m.MESSAGE_RECEIVED,
        "sent": m.MESSAGE_SENT,
        "start": rng.start,
        "end": rng.end,
    }
    fr = (await fetch_rows(uow, _FIRST_RESPONSE_SQL, params))[0]
    return FirstResponseOut(
        median_seconds=fr.median, conversations=int(fr.conversations), answered=int(fr.answered)
    )


async def _per_hour(uow: UnitOfWork, tenant: uuid.UUID, rng: Range) -> dict[int, int]:
    """Activity per hour of the day: hourly buckets in the zone, folded onto the hour."""
    hourly = bucket_starts(rng, "hour", limit=None)
    activity = await compute(uow, Spec(tenant, list(_ACTIVITY), "count", [], None, 1), rng, hourly)
    per_hour: dict[int, int] = defaultdict(int)
    for series in activity.values.values():
        for b, v in enumerate(series):
            per_hour[hourly[b].astimezone(rng.tz).hour] += v
    return per_hour


async def _members_out(uow: UnitOfWork, counts: Result, revenue_rows: list[Any]) -> list[MemberSummaryOut]:
    ids = {k[1] for k in counts.values if k[1]} | {r.member for r in revenue_rows if r.member}
    refs = await members(uow, ids)
    return [
        MemberSummaryOut(
            member=refs[i],
            bookings_confirmed=_total(counts, m.BOOKING_CONFIRMED, i),
            bookings_completed=_total(counts, m.BOOKING_COMPLETED, i),
            messages_received=_total(counts, m.MESSAGE_RECEIVED, i),
            messages_sent=_total(counts, m.MESSAGE_SENT, i),
            revenue=_revenue(revenue_rows, i),
        )
        for i in sorted(refs, key=lambda i: (refs[i].slug is None, refs[i].slug or "", i))
    ]


def _bookings(result: Result, member: str | None = None) -> BookingsOut:
    return BookingsOut(**{k: _total(result, n, member) for k, n in _BOOKINGS.items()})


def _messages(result: Result, member: str | None = None) -> MessagesOut:
    return MessagesOut(
        received=_total(result, m.MESSAGE_RECEIVED, member), sent=_total(result, m.MESSAGE_SENT, member)
    )


def _summary_text(
    ctx: TenantContext,
    rng: Range,
    bookings: BookingsOut,
    confirmed_before: int,
    revenue: list[RevenueOut],
    messages: MessagesOut,
    first_response: FirstResponseOut,
    busiest: list[int],
) -> str:
    money = ", ".join(f"{r.booked} {r.currency or '(no currency)'} booked" for r in revenue) or "no revenue"
    return (
        f"From {rng.local(rng.start)} to {rng.local(rng.end)} ({rng.tz.key}), {context_text(ctx)}:"
        f" {bookings.confirmed} bookings confirmed ({confirmed_before} the period"
        f" before), {bookings.completed} completed, {bookings.cancelled} cancelled; {money};"
        f" {messages.received} messages received, {messages.sent} sent;"
        + (
            f" median first response {duration(first_response.median_seconds)}"
            f" ({first_response.answered} of {first_response.conversations} conversations answered)"
            if first_response.median_seconds is not None
            else f" no answered conversation ({first_response.conversations} started)"
        )
        + (f"; busiest hours {', '.join(f'{h:02d}:00' for h in busiest)}." if busiest else ".")
    )
