"""Bookings housekeeping: holds past their TTL are released, reminders go out once."""

from __future__ import annotations

from core.bookings.housekeeping import expire_holds, send_due_reminders
from core.events import ScheduledRun, schedule
from core.observability import get_logger
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
