"""The booking lifecycle after creation: confirm, decline, cancel, reschedule, record the outcome."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Text, cast, func, literal, select
from sqlalchemy.dialects.postgresql import JSONB

from core.bookings.availability import fits
from core.bookings.models import ACTIVE_STATES, Booking, Service
from core.bookings.policy import (
    READ,
    SLOTS_HINT,
    WRITE,
    client_required,
    invalid_transition,
    late_fee,
    pick_providers,
    require_provider_or_manager,
    rules_for,
    unavailable,
)
from core.bookings.presenters import emit_event, iso, manage_link_out, row_out, status_of
from core.bookings.queries import (
    BookingRow,
    Provider,
    apply_changes,
    busy_ranges,
    eligible_providers,
    expire_stale_holds,
    hours_of_providers,
    load_booking_row,
    lock_providers,
    resolve_client,
)
from core.bookings.schemas import (
    BookingChangeOut,
    BookingOut,
    CancelIn,
    CancellationOut,
    ConfirmIn,
    DeclineIn,
    MoveSlotsQuery,
    OutcomeIn,
    RescheduleIn,
    RescheduleOut,
    SlotsOut,
    SlotsQuery,
)
from core.bookings.slots import free_slots, without_its_own_time
from core.context import TenantContext
from core.errors import Conflict, FieldIssue, Gone, ValidationFailed
from core.idempotency import idempotent, idempotent_operation
from core.observability import current_traceparent
from core.uow import UnitOfWork
from core.utilities import utcnow


@idempotent_operation("bookings.confirm")
async def confirm_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    data: ConfirmIn,
    idempotency_key: str | None = None,
) -> BookingOut:
    """Confirm a hold (with the client's details, if the hold had none) or a request (the
    provider's yes). Confirming a confirmed booking changes nothing."""
    ctx.require(WRITE)
    row = await load_booking_row(ctx, uow, booking_id, lock=True)
    b: Booking = row[0]
    status = status_of(b)
    if status == "confirmed":
        return row_out(row, manage_link_out(uow, b))
    if status == "expired":
        raise Gone(
            "this hold has expired and its slot was released",
            code="hold_expired",
            hint="hold the slot again (it may have been taken): " + SLOTS_HINT,
        )
    if status == "requested":
        require_provider_or_manager(ctx, b.provider_id, "confirm a request")
    elif status != "held":
        raise invalid_transition(b, "confirmed", "held or requested")
    client = await resolve_client(ctx, uow, data)
    if client is None and b.client_id is None:
        raise client_required()
    values: dict[str, Any] = {
        "status": "confirmed",
        "confirmed_at": func.now(),
        "hold_expires_at": None,
        "traceparent": current_traceparent(),
    }
    if client is not None:
        values["client_id"] = client.id
    if data.notes is not None:
        values["notes"] = data.notes
    if data.client_note is not None:
        values["client_note"] = data.client_note
    if data.time_zone is not None:
        values["client_time_zone"] = data.time_zone
    row = await _change(ctx, uow, b.id, values, "confirmed", previous_status=status)
    return row_out(row, manage_link_out(uow, row[0]))


async def _change(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    changes: dict[str, Any],
    event: str,
    **data: Any,
) -> BookingRow:
    """Write `changes` to the booking, read it back and emit `bookings/booking.<event>` (with
    `data`) from what was read: the event carries the booking as it now is."""
    await apply_changes(uow, booking_id, **changes)
    row = await load_booking_row(ctx, uow, booking_id)
    emit_event(uow, event, row[0], **data)
    return row


async def _provider_step(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    allowed: str,
    to: str,
    doing: str,
    action: str | None = None,
) -> tuple[BookingRow, bool]:
    """The booking, locked, for its provider (or a manager) to move from `allowed` to `to`, and
    whether it is there already: a retry is answered with the booking as it is, by anyone."""
    ctx.require(WRITE)
    row = await load_booking_row(ctx, uow, booking_id, lock=True)
    b: Booking = row[0]
    if b.status == to:
        return row, True
    if b.status != allowed:
        raise invalid_transition(b, action or to, allowed)
    require_provider_or_manager(ctx, b.provider_id, doing)
    return row, False


async def decline_booking(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, data: DeclineIn
) -> BookingOut:
    """The provider says no to a request, with a reason the client may be told."""
    row, done = await _provider_step(ctx, uow, booking_id, "requested", "declined", "decline a request")
    if done:
        return row_out(row)
    changes = {"status": "declined", "decline_reason": data.reason}
    return row_out(await _change(ctx, uow, booking_id, changes, "declined", reason=data.reason))


async def cancel(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    by: str,
    reason: str | None,
    dry_run: bool,
) -> BookingChangeOut:
    row = await load_booking_row(ctx, uow, booking_id, lock=not dry_run)
    b: Booking = row[0]
    if b.status == "cancelled":
        return BookingChangeOut(
            dry_run=dry_run, booking=row_out(row), changes=[], policy_note="already cancelled"
        )
    if status_of(b) not in ACTIVE_STATES:
        raise invalid_transition(b, "cancelled", "held, requested or confirmed")
    now = utcnow()
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    fee, note = late_fee(b, service, by, now)
    changes = [f"status: {b.status} -> cancelled", f"the slot {iso(b.start_at)} is released"]
    if fee:
        changes.append(f"late cancellation fee: {fee.amount} {fee.currency}")
    if dry_run:
        preview = row_out(row).model_copy(
            update={
                "status": "cancelled",
                "cancellation": CancellationOut(
                    by=by,
                    at=now,
                    reason=None if by == "client" else reason,
                    untrusted_reason=reason if by == "client" else None,
                    fee=fee,
                ),
            }
        )
        return BookingChangeOut(dry_run=True, booking=preview, changes=changes, fee=fee, policy_note=note)
    previous = b.status
    values = {
        "status": "cancelled",
        "cancelled_by": by,
        "cancel_reason": reason,
        "cancelled_at": func.now(),
        "cancellation_fee": fee.amount if fee else None,
    }
    row = await _change(
        ctx,
        uow,
        b.id,
        values,
        "cancelled",
        by=by,
        previous_status=previous,
        late=fee is not None or (note or "").startswith("late"),
        fee=fee.model_dump(mode="json") if fee else None,
    )
    return BookingChangeOut(dry_run=False, booking=row_out(row), changes=changes, fee=fee, policy_note=note)


async def cancel_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    data: CancelIn,
    idempotency_key: str | None = None,
) -> BookingChangeOut:
    """Cancel a booking (by the provider, or on the client's behalf: then the late-cancellation
    policy applies). `dry_run` shows what would change, and any fee, without changing anything."""
    ctx.require(WRITE)

    async def work() -> BookingChangeOut:
        return await cancel(ctx, uow, booking_id, data.by, data.reason, data.dry_run)

    if data.dry_run:  # a preview records nothing, not even its idempotency key
        return await work()
    payload = {"booking_id": booking_id, "data": data}
    return await idempotent(ctx, uow, idempotency_key, "bookings.cancel", payload, BookingChangeOut, work)


async def _move_target(
    ctx: TenantContext, uow: UnitOfWork, service: Service, b: Booking, provider_slug: str | None
) -> Provider:
    """Who the moved booking goes to: the named provider, else its current one if still eligible."""
    eligible = (await eligible_providers(ctx, uow, [service.id]))[service.id]
    current = next((p for p in eligible if p.id == b.provider_id), None)
    if provider_slug:
        return pick_providers(service, eligible, provider_slug)[0]
    if current is not None:
        return current
    raise ValidationFailed(
        "the booking's provider no longer delivers this service",
        code="provider_not_eligible",
        hint="pass `provider` to move the booking to another provider",
        errors=[FieldIssue("provider", "required")],
    )


async def _move(
    ctx: TenantContext,
    uow: UnitOfWork,
    b: Booking,
    target: Provider,
    span: tuple[dt.datetime, dt.datetime],
    by: str,
    now: dt.datetime,
) -> Any:
    """Move the booking under the providers' locks; its former times go to its history."""
    start, end = span
    before = dt.timedelta(minutes=b.buffer_before_minutes)
    after = dt.timedelta(minutes=b.buffer_after_minutes)
    previous_start, previous_end, previous_provider = b.start_at, b.end_at, b.provider_id
    await lock_providers(uow, [b.provider_id, target.id])
    await expire_stale_holds(uow, [target.id], start - before, end + after)
    entry = RescheduleOut(
        from_start_at=b.start_at,
        from_end_at=b.end_at,
        to_start_at=start,
        to_end_at=end,
        by=by,
        at=now,
        from_provider_id=b.provider_id if target.id != b.provider_id else None,
    )
    # The constraint checks the moved row against every other active booking of the provider:
    # a reschedule onto taken time fails here, whatever the read above saw.
    moved = {
        "start_at": start,
        "end_at": end,
        "provider_id": target.id,
        # A new time gets its own reminder, when that time comes near.
        "reminder_sent_at": None,
        "reminder_message_id": None,
        "reminder_channel": None,
        "reminder_status": None,
        "reminder_error": None,
        "traceparent": current_traceparent(),
        "reschedules": Booking.reschedules.op("||")(
            cast(literal("[" + entry.model_dump_json() + "]", type_=Text), JSONB)
        ),
    }
    return await _change(
        ctx,
        uow,
        b.id,
        moved,
        "rescheduled",
        by=by,
        previous_start_at=iso(previous_start),
        previous_end_at=iso(previous_end),
        previous_provider_id=str(previous_provider),
    )


async def reschedule(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    new_start: dt.datetime,
    provider_slug: str | None,
    by: str,
    dry_run: bool,
) -> BookingChangeOut:
    row = await load_booking_row(ctx, uow, booking_id, lock=not dry_run)
    b: Booking = row[0]
    if status_of(b) not in ACTIVE_STATES:
        raise invalid_transition(b, "rescheduled", "held, requested or confirmed")
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    target = await _move_target(ctx, uow, service, b, provider_slug)
    now = utcnow()
    duration = b.end_at - b.start_at
    rules = rules_for(service, now, duration)
    start = new_start.astimezone(dt.UTC)
    end = start + duration
    if start == b.start_at and target.id == b.provider_id:
        if by == "client":  # their page never offers it (`manage_slots`): no move to say "moved" about
            raise unavailable("current_time")
        return BookingChangeOut(dry_run=dry_run, booking=row_out(row), changes=[], policy_note="no change")
    hours = (await hours_of_providers(ctx, uow, [target.id]))[target.id]
    # The client moves only to a time their page offers; the provider anywhere in the hours.
    reason = fits(hours, rules, start, offered_only=by == "client") if hours else "no_hours"
    if reason is not None:
        raise unavailable(reason)
    changes = [f"start: {iso(b.start_at)} -> {iso(start)}", f"end: {iso(b.end_at)} -> {iso(end)}"]
    if target.id != b.provider_id:
        changes.append(f"provider: -> {target.slug}")
    if dry_run:
        before = dt.timedelta(minutes=b.buffer_before_minutes)
        after = dt.timedelta(minutes=b.buffer_after_minutes)
        busy = await busy_ranges(uow, [target.id], start - before, end + after, except_booking=b.id)
        if busy[target.id].overlaps(start - before, end + after):
            raise Conflict("the new time is not free for this provider", code="slot_taken", hint=SLOTS_HINT)
        preview = row_out(row).model_copy(update={"start_at": start, "end_at": end, "provider": target.ref})
        return BookingChangeOut(dry_run=True, booking=preview, changes=changes)
    row = await _move(ctx, uow, b, target, (start, end), by, now)
    manage = manage_link_out(uow, row[0]) if row[0].status != "held" else None
    return BookingChangeOut(dry_run=False, booking=row_out(row, manage), changes=changes)


async def reschedule_slots(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, q: MoveSlotsQuery
) -> SlotsOut:
    """The times a booking could move to (`reschedule_booking`): its service's free times with
    its own length, at its provider or `provider`. Unlike the service's free slots, the booking
    does not block itself: the times next to it are offered; its own time is not (no move)."""
    ctx.require(READ)
    row = await load_booking_row(ctx, uow, booking_id)
    b: Booking = row[0]
    if status_of(b) not in ACTIVE_STATES:
        raise invalid_transition(b, "rescheduled", "held, requested or confirmed")
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    target = await _move_target(ctx, uow, service, b, q.provider)
    days = SlotsQuery(service_id=service.id, from_date=q.from_date, to_date=q.to_date, time_zone=q.time_zone)
    found = await free_slots(ctx, uow, service, [target], days, b.id, b.end_at - b.start_at)
    return without_its_own_time(found, b.start_at) if target.id == b.provider_id else found


async def reschedule_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    data: RescheduleIn,
    idempotency_key: str | None = None,
) -> BookingChangeOut:
    """Move a booking to a new time (and optionally another provider). It keeps its id; the
    previous times go to its history. Refused when the new time is taken (409 `slot_taken`).
    `dry_run` checks and shows the change without making it."""
    ctx.require(WRITE)

    async def work() -> BookingChangeOut:
        return await reschedule(ctx, uow, booking_id, data.start_at, data.provider, "provider", data.dry_run)

    if data.dry_run:
        return await work()
    payload = {"booking_id": booking_id, "data": data}
    return await idempotent(ctx, uow, idempotency_key, "bookings.reschedule", payload, BookingChangeOut, work)


async def record_outcome(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, data: OutcomeIn
) -> BookingOut:
    """After the start time: the booking happened (`completed`) or the client didn't come (`no_show`)."""
    row, done = await _provider_step(
        ctx, uow, booking_id, "confirmed", data.outcome, "record the outcome", f"marked {data.outcome}"
    )
    if done:
        return row_out(row)
    b: Booking = row[0]
    if b.start_at > utcnow():
        raise Conflict(
            "this booking has not started yet",
            code="not_started",
            hint="record the outcome after the start time; cancel or reschedule before it",
        )
    row = await _change(ctx, uow, b.id, {"status": data.outcome}, data.outcome)
    return row_out(row)
