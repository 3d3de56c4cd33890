"""The client's manage link: a token that shows, cancels or reschedules one booking."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.bookings import calendar, links
from core.bookings.lifecycle import cancel, reschedule, reschedule_slots
from core.bookings.models import Booking, Service
from core.bookings.policy import WRITE
from core.bookings.presenters import calendar_entry, emit_event, manage_link_out, money, status_of
from core.bookings.queries import apply_changes, load_booking_row
from core.bookings.schemas import Calendar as CalendarOut
from core.bookings.schemas import (
    ManageCancelIn,
    ManagedBookingOut,
    ManagedChangeOut,
    ManageLinkOut,
    ManageRescheduleIn,
    MoveSlotsQuery,
    SlotsOut,
)
from core.context import TenantContext, service_context
from core.errors import Conflict, NotFound
from core.uow import Database, UnitOfWork
from core.utilities import utcnow


async def manage_link(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, revoke_previous: bool = False
) -> ManageLinkOut:
    """A fresh link for the client to view, cancel or reschedule this booking (and nothing else).
    `revoke_previous`: every link given out before stops working (a leaked or mis-sent link)."""
    ctx.require(WRITE)
    b: Booking = (await load_booking_row(ctx, uow, booking_id, lock=revoke_previous))[0]
    if revoke_previous:
        await apply_changes(uow, b.id, manage_link_generation=Booking.manage_link_generation + 1)
        b = (await load_booking_row(ctx, uow, booking_id))[0]
        emit_event(uow, "manage_links_revoked", b, generation=b.manage_link_generation)
    return manage_link_out(uow, b)


@asynccontextmanager
async def _managed(db: Database, token: str) -> AsyncIterator[tuple[TenantContext, UnitOfWork, Booking]]:
    """The booking a manage token names, in a transaction narrowed to that booking's tenant."""
    claims = links.read(db.settings, token)
    booking_id = claims.booking_id
    async with db.system() as uow:
        owner = (
            await uow.session.execute(
                select(
                    Booking.provider_id, Booking.org_id, Booking.manage_link_generation, Booking.end_at
                ).where(Booking.id == booking_id)
            )
        ).one_or_none()
        # A revoked link looks exactly like one that never existed.
        if owner is None or owner.manage_link_generation != claims.generation:
            raise NotFound("no booking for this link", code="manage_link_invalid", hint="ask the provider")
        links.alive(db.settings, claims, owner.end_at)
        # Work as the booking's provider in its context: their calendar is the one that changes.
        await uow.act_as_service(owner.provider_id, owner.org_id)
        ctx = service_context(owner.provider_id, owner.org_id, frozenset({WRITE}), uow.trace_id)
        b = (await load_booking_row(ctx, uow, booking_id))[0]
        yield ctx, uow, b


async def _managed_out(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> ManagedBookingOut:
    row = await load_booking_row(ctx, uow, booking_id)
    b: Booking = row[0]
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    status = status_of(b)
    open_ = status in ("confirmed", "requested") and b.start_at > utcnow()
    policy = None
    if service.cancel_notice_minutes > 0:
        fee = money(service.late_cancel_fee, b.currency or service.currency)
        policy = f"cancel at least {service.cancel_notice_minutes / 60:g} h before the start" + (
            f"; later cancellations cost {fee.amount} {fee.currency}" if fee else ""
        )
    return ManagedBookingOut(
        id=b.id,
        status=status,
        service=row[1],
        provider=row[4] or "Former member",
        start_at=b.start_at.astimezone(ZoneInfo(b.client_time_zone)) if b.client_time_zone else b.start_at,
        end_at=b.end_at.astimezone(ZoneInfo(b.client_time_zone)) if b.client_time_zone else b.end_at,
        time_zone=b.client_time_zone,
        location_kind=b.location_kind,
        location=b.location,
        price=money(b.price_amount, b.currency),
        can_cancel=open_,
        can_reschedule=open_,
        cancellation_policy=policy,
    )


def _closed(b: Booking) -> Conflict:
    return Conflict(
        "this booking can no longer be changed here",
        code="booking_closed",
        hint="contact the provider",
        extra={"status": status_of(b)},
    )


async def manage_view(db: Database, token: str) -> ManagedBookingOut:
    """What the client sees through their link."""
    async with _managed(db, token) as (ctx, uow, b):
        return await _managed_out(ctx, uow, b.id)


async def manage_slots(
    db: Database, token: str, from_date: dt.date, to_date: dt.date, time_zone: str | None = None
) -> SlotsOut:
    """Times the client may move their booking to (same service and provider)."""
    async with _managed(db, token) as (ctx, uow, b):
        if status_of(b) not in ("confirmed", "requested") or b.start_at <= utcnow():
            raise _closed(b)  # as `manage_reschedule` would refuse any of the times
        q = MoveSlotsQuery(
            from_date=from_date, to_date=to_date, time_zone=time_zone or b.client_time_zone or "UTC"
        )
        return await reschedule_slots(ctx, uow, b.id, q)


async def manage_cancel(db: Database, token: str, data: ManageCancelIn) -> ManagedChangeOut:
    """The client cancels their booking (before it starts); the late-cancellation policy applies."""
    async with _managed(db, token) as (ctx, uow, b):
        if b.status != "cancelled" and (
            status_of(b) not in ("confirmed", "requested") or b.start_at <= utcnow()
        ):
            raise _closed(b)
        change = await cancel(ctx, uow, b.id, "client", data.reason, data.dry_run)
        return ManagedChangeOut(
            dry_run=change.dry_run,
            booking=await _managed_out(ctx, uow, b.id),
            changes=change.changes,
            fee=change.fee,
            policy_note=change.policy_note,
        )


async def manage_reschedule(db: Database, token: str, data: ManageRescheduleIn) -> ManagedChangeOut:
    """The client moves their booking to another free time of the same provider."""
    async with _managed(db, token) as (ctx, uow, b):
        if status_of(b) not in ("confirmed", "requested") or b.start_at <= utcnow():
            raise _closed(b)
        change = await reschedule(ctx, uow, b.id, data.start_at, None, "client", data.dry_run)
        view = await _managed_out(ctx, uow, b.id)
        if change.dry_run:
            zone = ZoneInfo(b.client_time_zone) if b.client_time_zone else dt.UTC
            view = view.model_copy(
                update={
                    "start_at": change.booking.start_at.astimezone(zone),
                    "end_at": change.booking.end_at.astimezone(zone),
                }
            )
        return ManagedChangeOut(dry_run=change.dry_run, booking=view, changes=change.changes)


async def manage_ics(db: Database, token: str) -> CalendarOut:
    async with _managed(db, token) as (ctx, uow, b):
        row = await load_booking_row(ctx, uow, b.id)
        content = calendar.document([calendar_entry(b, row[1], row[4], True)], row[1])
        return CalendarOut(filename=f"booking-{b.id}.ics", content=content)
