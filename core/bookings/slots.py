"""Free slots of a service between two dates, in the requester's time zone."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from core.bookings.availability import Busy, Hours, free_starts, in_zone, micros
from core.bookings.policy import READ, pick_providers, require_active, rules_for
from core.bookings.queries import Provider, Terms, busy_ranges, hours_of_providers, load_offer
from core.bookings.schemas import ServiceRef, SlotsOut, SlotsQuery
from core.context import TenantContext
from core.uow import UnitOfWork
from core.utilities import utcnow

MAX_SLOTS = 500


async def free_slots(
    ctx: TenantContext,
    uow: UnitOfWork,
    service: Terms,
    providers: list[Provider],
    q: SlotsQuery,
    except_booking: uuid.UUID | None = None,
    duration: dt.timedelta | None = None,
) -> SlotsOut:
    """Free slots of given providers (a booking being moved does not block its own new time)."""
    start, end = _window(q)
    rules = rules_for(service, utcnow(), duration)
    ids = [p.id for p in providers]
    hours = await hours_of_providers(ctx, uow, ids)
    busy = await busy_ranges(
        uow, ids, start - rules.buffer_before, end + rules.duration + rules.buffer_after, except_booking
    )
    return _slots_out(service, providers, hours, busy, q, duration)


def _slots_out(
    service: Terms,
    providers: list[Provider],
    hours: dict[uuid.UUID, Hours | None],
    busy: dict[uuid.UUID, Busy],
    q: SlotsQuery,
    duration: dt.timedelta | None = None,
) -> SlotsOut:
    zone = ZoneInfo(q.time_zone)
    start, end = _window(q)
    rules = rules_for(service, utcnow(), duration)
    by_start: dict[int, list[str]] = {}
    for p in providers:  # round-robin order: the first provider of a slot is next in turn
        if (h := hours.get(p.id)) is not None:
            # A start among the first MAX_SLOTS of all is among the first MAX_SLOTS of its
            # provider, so no provider needs more (one more tells that the answer is truncated).
            for s in free_starts(h, rules, busy[p.id], start, end)[: MAX_SLOTS + 1]:
                by_start.setdefault(s, []).append(p.slug)
    ordered = sorted(by_start)
    length = micros(rules.duration)
    ref = ServiceRef(id=service.id, name=service.name, duration_minutes=service.duration_minutes)
    # One validation of the whole answer: a `SlotOut` built one by one cost a validator call
    # (and a Python constructor) per slot, up to MAX_SLOTS of them.
    return SlotsOut.model_validate(
        {
            "service": ref,
            "time_zone": q.time_zone,
            "from_date": q.from_date,
            "to_date": q.to_date,
            "slots": [
                {"start": in_zone(s, zone), "end": in_zone(s + length, zone), "providers": by_start[s]}
                for s in ordered[:MAX_SLOTS]
            ],
            "truncated": len(ordered) > MAX_SLOTS,
        }
    )


async def find_slots(ctx: TenantContext, uow: UnitOfWork, q: SlotsQuery) -> SlotsOut:
    """Free start times of a service between two dates, in the requester's time zone."""
    ctx.require(READ)
    offer = await load_offer(ctx, uow, q.service_id, busy_window=_window(q))
    require_active(offer.service)
    eligible = offer.providers
    if q.provider:
        eligible = pick_providers(offer.service, eligible, q.provider)
    hours = offer.hours_of([p.id for p in eligible])
    return _slots_out(offer.service, eligible, hours, offer.busy, q)


def without_its_own_time(found: SlotsOut, start: dt.datetime) -> SlotsOut:
    """The times a booking could move to: a booking does not block its own move, so its own
    time is free to it, but moving there moves nothing."""
    # Compared in UTC: Python never finds a time of a repeated hour (01:00 on a fall-back night,
    # in the requester's zone) equal to an instant of another zone, even the same instant.
    own = start.astimezone(dt.UTC)
    return found.model_copy(update={"slots": [s for s in found.slots if s.start.astimezone(dt.UTC) != own]})


def _window(q: SlotsQuery) -> tuple[dt.datetime, dt.datetime]:
    """The instants the query's dates span in its zone."""
    zone = ZoneInfo(q.time_zone)
    start = dt.datetime.combine(q.from_date, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(q.to_date + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
    return start, end
