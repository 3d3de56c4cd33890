"""Free slots of a service between two dates, in the requester's time zone."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from core.bookings.availability import slot_starts
from core.bookings.models import Service
from core.bookings.policy import READ, pick_providers, require_active, rules_for
from core.bookings.queries import Provider, busy_ranges, eligible_providers, hours_of_providers, load_service
from core.bookings.schemas import ServiceRef, SlotOut, SlotsOut, SlotsQuery
from core.context import TenantContext
from core.uow import UnitOfWork
from core.utilities import utcnow

MAX_SLOTS = 500


async def free_slots(
    ctx: TenantContext,
    uow: UnitOfWork,
    service: Service,
    providers: list[Provider],
    q: SlotsQuery,
    except_booking: uuid.UUID | None = None,
    duration: dt.timedelta | None = None,
) -> SlotsOut:
    zone = ZoneInfo(q.time_zone)
    start = dt.datetime.combine(q.from_date, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(q.to_date + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
    rules = rules_for(service, utcnow(), duration)
    ids = [p.id for p in providers]
    hours = await hours_of_providers(ctx, uow, ids)
    busy = await busy_ranges(
        uow, ids, start - rules.buffer_before, end + rules.duration + rules.buffer_after, except_booking
    )
    by_start: dict[dt.datetime, list[str]] = {}
    for p in providers:  # round-robin order: the first provider of a slot is next in turn
        if (h := hours.get(p.id)) is not None:
            for s in slot_starts(h, rules, busy[p.id], start, end):
                by_start.setdefault(s, []).append(p.slug)
    ordered = sorted(by_start.items())
    return SlotsOut(
        service=ServiceRef(id=service.id, name=service.name, duration_minutes=service.duration_minutes),
        time_zone=q.time_zone,
        from_date=q.from_date,
        to_date=q.to_date,
        slots=[
            SlotOut(start=s.astimezone(zone), end=(s + rules.duration).astimezone(zone), providers=slugs)
            for s, slugs in ordered[:MAX_SLOTS]
        ],
        truncated=len(ordered) > MAX_SLOTS,
    )


async def find_slots(ctx: TenantContext, uow: UnitOfWork, q: SlotsQuery) -> SlotsOut:
    """Free start times of a service between two dates, in the requester's time zone."""
    ctx.require(READ)
    service = await load_service(ctx, uow, q.service_id)
    require_active(service)
    eligible = (await eligible_providers(ctx, uow, [service.id]))[service.id]
    if q.provider:
        eligible = pick_providers(service, eligible, q.provider)
    return await free_slots(ctx, uow, service, eligible, q)
