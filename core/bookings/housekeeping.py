"""Bookings housekeeping operations: expiring holds and emitting due reminders."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from core.bookings.models import Booking
from core.bookings.presenters import emit_event
from core.uow import UnitOfWork


async def expire_holds(uow: UnitOfWork) -> int:
    """Mark holds past their TTL as expired (a scheduled sweep; writes also expire them first)."""
    rows = (
        await uow.session.execute(
            update(Booking)
            .where(Booking.status == "held", Booking.hold_expires_at <= func.now())
            .values(status="expired", updated_at=func.now())
            .returning(Booking.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    return len(rows)


async def send_due_reminders(uow: UnitOfWork, lead: dt.timedelta | None = None) -> int:
    """Emit `bookings/booking.reminder_due` once per confirmed booking (per booking time: a
    reschedule re-arms it) when its start is within the lead time. The marker is set in the same
    statement that claims the rows, so concurrent sweeps never emit twice."""
    lead = lead or dt.timedelta(minutes=uow.db.settings.bookings_reminder_lead_minutes)
    due = (
        select(Booking.id)
        .where(
            Booking.status == "confirmed",
            Booking.reminder_sent_at.is_(None),
            Booking.start_at > func.now(),
            Booking.start_at <= func.now() + lead,
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = (
        await uow.session.execute(
            update(Booking)
            .where(Booking.id.in_(due), Booking.reminder_sent_at.is_(None))
            .values(reminder_sent_at=func.now())
            .returning(Booking)
            .execution_options(synchronize_session=False)
        )
    ).scalars()
    count = 0
    for b in rows:
        # In the trace of the request that confirmed (or moved) the booking, not the sweep's.
        emit_event(
            uow, "reminder_due", b, traceparent=b.traceparent, lead_minutes=int(lead.total_seconds() // 60)
        )
        count += 1
    return count
