"""Bookings housekeeping: holds past their TTL are released, reminders go out once and their
delivery is followed."""

from __future__ import annotations

import uuid

from core.bookings import reminders
from core.bookings.housekeeping import expire_holds, send_due_reminders
from core.events import subscribe, sweep
from core.outbox import Event
from core.uow import UnitOfWork


@sweep("* * * * *", name="bookings.expire_holds", logged_as="holds_expired")
async def sweep_expired_holds(uow: UnitOfWork) -> int:
    """Expired holds already block nothing (slot queries ignore them and writes expire them
    first); the sweep makes their state say so."""
    return await expire_holds(uow)


@sweep("* * * * *", name="bookings.reminders", logged_as="reminders_due")
async def emit_due_reminders(uow: UnitOfWork) -> int:
    return await send_due_reminders(uow)


@subscribe("bookings/booking.reminder_due", name="bookings.send_reminder")
async def send_reminder(event: Event, uow: UnitOfWork) -> None:
    """The reminder becomes a message to the client (core.bookings.reminders)."""
    await reminders.deliver_reminder(uow, uuid.UUID(str(event.data["booking_id"])))


@subscribe("messaging/message.delivered", "messaging/message.failed", name="bookings.reminder_outcome")
async def follow_reminder(event: Event, uow: UnitOfWork) -> None:
    """A reminder's delivery state, shown on its booking (other messages change nothing)."""
    await reminders.reminder_outcome(
        uow,
        uuid.UUID(str(event.data["message_id"])),
        delivered=event.name == "messaging/message.delivered",
        reason=str(event.data.get("reason") or "") or None,
    )
