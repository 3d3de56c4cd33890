"""Bookings housekeeping: holds past their TTL are released, reminders go out once and their
delivery is followed."""

from __future__ import annotations

import uuid

from core.bookings import reminders
from core.bookings.housekeeping import expire_holds, send_due_reminders
from core.events import ScheduledRun, schedule, subscribe
from core.observability import get_logger
from core.outbox import Event
from core.uow import UnitOfWork

log = get_logger("atlilith.bookings.handlers")


@schedule("* * * * *", name="bookings.expire_holds")
async def sweep_expired_holds(run: ScheduledRun, uow: UnitOfWork) -> None:
    """Expired holds already block nothing (slot queries ignore them and writes expire them
    first); the sweep makes their state say so."""
    count = await expire_holds(uow)
    if count:
        log.info("holds_expired", count=count)


@schedule("* * * * *", name="bookings.reminders")
async def emit_due_reminders(run: ScheduledRun, uow: UnitOfWork) -> None:
    count = await send_due_reminders(uow)
    if count:
        log.info("reminders_due", count=count)


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
