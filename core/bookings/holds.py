"""Creating bookings: a short hold while details are collected, or a request the provider answers."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, insert, update

from core.bookings.availability import Rules, fits
from core.bookings.models import Booking, Service, ServiceProvider
from core.bookings.policy import (
    SLOTS_HINT,
    WRITE,
    client_required,
    pick_providers,
    require_active,
    rules_for,
    unavailable,
)
from core.bookings.presenters import booking_out, emit_event, iso, manage_link_out
from core.bookings.queries import (
    Provider,
    busy_ranges,
    eligible_providers,
    expire_stale_holds,
    hours_of_providers,
    load_service,
    lock_providers,
    resolve_client,
)
from core.bookings.schemas import BookingOut, ClientRef, HoldIn, RequestIn, ServiceRef
from core.bookings.schemas.booking import _SlotFields
from core.context import TenantContext
from core.errors import Conflict
from core.idempotency import idempotent_operation
from core.uow import UnitOfWork
from core.utilities import utcnow


async def _fitting(
    ctx: TenantContext, uow: UnitOfWork, service: Service, slug: str | None, rules: Rules, start: dt.datetime
) -> list[Provider]:
    """The providers the booking may go to whose hours and the service's notice allow this start."""
    candidates = pick_providers(service, (await eligible_providers(ctx, uow, [service.id]))[service.id], slug)
    hours = await hours_of_providers(ctx, uow, [p.id for p in candidates])
    reasons = {p.id: fits(h, rules, start) if (h := hours[p.id]) else "no_hours" for p in candidates}
    candidates = [p for p in candidates if reasons[p.id] is None]
    if not candidates:
        raise unavailable(next(r for r in reasons.values() if r))
    return candidates


async def _assign(
    uow: UnitOfWork, candidates: list[Provider], blocked: tuple[dt.datetime, dt.datetime]
) -> Provider:
    """Take the candidates' locks and pick who gets the booking."""
    ids = [p.id for p in candidates]
    await lock_providers(uow, ids)
    await expire_stale_holds(uow, ids, *blocked)
    if len(candidates) == 1:
        return candidates[0]
    # Round robin: the least recently assigned provider who is free then (read under the
    # locks, so it is exact for every writer that takes them).
    busy = await busy_ranges(uow, ids, *blocked)
    free = [p for p in candidates if not busy[p.id].overlaps(*blocked)]
    if not free:
        raise Conflict("every provider of this service is busy then", code="slot_taken", hint=SLOTS_HINT)
    return free[0]


async def _insert(
    ctx: TenantContext,
    uow: UnitOfWork,
    data: _SlotFields,
    service: Service,
    provider: Provider,
    client: ClientRef | None,
    status: str,
    span: tuple[dt.datetime, dt.datetime],
    hold_expires_at: dt.datetime | None,
) -> Booking:
    """The booking row, on the service's current terms, and the provider's turn taken."""
    booking = (
        await uow.session.execute(
            insert(Booking)
            .values(
                id=uuid.uuid4(),
                service_id=service.id,
                provider_id=provider.id,
                client_id=client.id if client else None,
                status=status,
                start_at=span[0],
                end_at=span[1],
                buffer_before_minutes=service.buffer_before_minutes,
                buffer_after_minutes=service.buffer_after_minutes,
                hold_expires_at=hold_expires_at,
                client_time_zone=data.time_zone,
                price_amount=service.price_amount,
                currency=service.currency,
                location_kind=service.location_kind,
                location=service.location,
                notes=data.notes,
                client_note=data.client_note,
                person_id=ctx.person_id,
                org_id=ctx.org_id,
            )
            .returning(Booking)
        )
    ).scalar_one()
    await uow.session.execute(
        update(ServiceProvider)
        .where(ServiceProvider.service_id == service.id, ServiceProvider.provider_id == provider.id)
        .values(last_assigned_at=func.now(), assigned_count=ServiceProvider.assigned_count + 1)
    )
    return booking


async def _create(
    ctx: TenantContext, uow: UnitOfWork, data: _SlotFields, status: str, ttl: int | None
) -> BookingOut:
    ctx.require(WRITE)
    service = await load_service(ctx, uow, data.service_id)
    require_active(service)
    now = utcnow()
    rules = rules_for(service, now)
    start = data.start_at.astimezone(dt.UTC)
    end = start + rules.duration
    candidates = await _fitting(ctx, uow, service, data.provider, rules, start)
    client = await resolve_client(ctx, uow, data)
    if status == "requested" and client is None:
        raise client_required()
    provider = await _assign(uow, candidates, (start - rules.buffer_before, end + rules.buffer_after))
    ttl_seconds = ttl or uow.db.settings.bookings_hold_ttl_seconds
    expires = now + dt.timedelta(seconds=ttl_seconds) if status == "held" else None
    booking = await _insert(ctx, uow, data, service, provider, client, status, (start, end), expires)
    extra = {"hold_expires_at": iso(booking.hold_expires_at)} if booking.hold_expires_at else {}
    emit_event(uow, status, booking, **extra)
    return booking_out(
        booking,
        ServiceRef(id=service.id, name=service.name, duration_minutes=service.duration_minutes),
        provider.ref,
        client,
        manage_link_out(uow, booking) if status == "requested" else None,
    )


@idempotent_operation("bookings.hold")
async def hold(
    ctx: TenantContext, uow: UnitOfWork, data: HoldIn, idempotency_key: str | None = None
) -> BookingOut:
    """Reserve a slot for a short time (default 5 minutes) while the details are collected;
    confirm it to book. An expired hold blocks nothing."""
    return await _create(ctx, uow, data, "held", data.ttl_seconds)


@idempotent_operation("bookings.request")
async def request_booking(
    ctx: TenantContext, uow: UnitOfWork, data: RequestIn, idempotency_key: str | None = None
) -> BookingOut:
    """Ask for a slot on the client's behalf; it stays blocked until the provider confirms or
    declines."""
    return await _create(ctx, uow, data, "requested", None)
