"""Reminders that arrive: `bookings/booking.reminder_due` becomes a message to the client.

The reminder goes out once, through the client's channel: `email` when the client has an
address and the context can deliver email (a mail peer is configured), else the `portal`
conversation (whose first outbound message issues the client's link, core.messaging
.conversation). It is an ordinary outbound message of the client's latest thread on that channel
(a new thread when there is none), so messaging's delivery handler delivers it and retries a
failure with backoff. The booking records the message, the channel and the delivery state,
which follows the message (`messaging/message.delivered` / `.failed`).

Seam: bookings → messaging (`send_message`, `create_thread`, `list_threads`, `get_settings`):
reminders are messages, so they reuse the one messaging rule set rather than a second sender.
"""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from sqlalchemy import select, update

from core import messaging
from core.bookings import links
from core.bookings.models import Booking, Schedule, Service
from core.bookings.presenters import status_of
from core.context import TenantContext, service_context
from core.errors import DomainError
from core.messaging.ingest import lock_thread_choice
from core.messaging.schemas import SendIn, ThreadIn
from core.observability import get_logger
from core.pagination import PageRequest
from core.scoping import same_tenant
from core.tenancy.models import Client, Person
from core.uow import UnitOfWork

__all__ = ["deliver_reminder", "reminder_outcome"]

log = get_logger("atlilith.bookings.reminders")
SCOPES = frozenset({"messaging:read", "messaging:write"})


def _text(b: Booking, service: str, provider: str, manage_url: str, hours_zone: str | None) -> str:
    # A client whose zone is unknown most likely lives where the provider works: their hours'
    # zone reads better than UTC, which is nobody's wall clock.
    named = b.client_time_zone or hours_zone
    zone = ZoneInfo(named) if named else None
    start = b.start_at.astimezone(zone) if zone else b.start_at
    where = f" at {b.location}" if b.location else ""
    # The zone is named either way: "at 12:00" alone reads as the reader's own time.
    when = f"{start:%A} {start.day} {start:%B} at {start:%H:%M}" + (f" ({named} time)" if zone else " UTC")
    return (
        f"Reminder: {service} with {provider}, {when}{where}.\n\n"
        f"To see, move or cancel this booking: {manage_url}"
    )


async def _channel(ctx: TenantContext, uow: UnitOfWork, client: Client) -> str:
    settings = await messaging.get_settings(ctx, uow)
    email = next((c for c in settings.channels if c.name == "email"), None)
    return "email" if client.email and email is not None and email.deliverable else "portal"


async def _send(
    ctx: TenantContext, uow: UnitOfWork, b: Booking, client: Client, body: str
) -> tuple[uuid.UUID, str]:
    channel = await _channel(ctx, uow, client)
    key = f"reminder:{b.id}:{b.start_at.isoformat()}"
    # "The latest thread, else a new one" is a read then a write: two reminders (or a reminder
    # and a first inbound message) for one client would each create a thread.
    await lock_thread_choice(uow, ctx.tenant_id, channel, client.id)
    page = await messaging.list_threads(
        ctx, uow, PageRequest(limit=1), messaging.ThreadFilter(client_id=client.id, channel=channel)
    )
    if page.items:
        sent = await messaging.send_message(
            ctx, uow, page.items[0].id, SendIn(body=body), idempotency_key=key
        )
        return sent.id, channel
    created = await messaging.create_thread(
        ctx, uow, ThreadIn(client_id=client.id, channel=channel, subject="Your booking", body=body), key
    )
    return created.messages[0].id, channel


async def deliver_reminder(uow: UnitOfWork, booking_id: uuid.UUID) -> None:
    """Send the reminder of a booking whose reminder fell due (idempotent: once per booking time)."""
    row = (
        await uow.session.execute(
            select(Booking, Service.name, Person.display_name, Client, Schedule.time_zone)
            .join(Service, Service.id == Booking.service_id)
            .join(Person, Person.id == Booking.provider_id)
            .outerjoin(Client, Client.id == Booking.client_id)
            .outerjoin(
                Schedule,
                same_tenant(Schedule, Booking) & (Schedule.provider_id == Booking.provider_id),
            )
            .where(Booking.id == booking_id)
            .with_for_update(of=Booking)
        )
    ).one_or_none()
    if row is None:
        return
    b, service, provider, client, hours_zone = row
    if b.reminder_message_id is not None or b.reminder_status == "skipped":
        return
    if client is None or status_of(b) != "confirmed" or b.reminder_sent_at is None:
        await _record(
            uow, b.id, status="skipped", error="no client to remind" if client is None else "no longer due"
        )
        return
    ctx = service_context(b.person_id, b.org_id, SCOPES, uow.trace_id)
    token, _ = links.issue(uow.db.settings, b.id, b.end_at, b.manage_link_generation)
    body = _text(b, service, provider, links.url(uow.db.settings, token), hours_zone)
    try:
        message_id, channel = await _send(ctx, uow, b, client, body)
    except DomainError as error:
        # Nothing can carry it (e.g. the client has no address for the channel): say so on the
        # booking instead of retrying for ever.
        await _record(uow, b.id, status="failed", error=f"{error.code}: {error.message}")
        log.warning("reminder_not_sent", booking_id=str(b.id), code=error.code)
        return
    await _record(uow, b.id, status="queued", message_id=message_id, channel=channel)


async def _record(
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    *,
    status: str,
    error: str | None = None,
    message_id: uuid.UUID | None = None,
    channel: str | None = None,
) -> None:
    values: dict[str, object] = {"reminder_status": status, "reminder_error": error}
    if message_id is not None:
        values |= {"reminder_message_id": message_id, "reminder_channel": channel}
    await uow.session.execute(update(Booking).where(Booking.id == booking_id).values(**values))


async def reminder_outcome(
    uow: UnitOfWork, message_id: uuid.UUID, *, delivered: bool, reason: str | None
) -> None:
    """A reminder's message was delivered or failed: the booking shows it. The two events may be
    handled out of order (a failure's event, then the retry's success, each on its own delivery):
    a message once delivered stays `sent`, whatever arrives after."""
    stmt = update(Booking).where(Booking.reminder_message_id == message_id)
    if not delivered:
        stmt = stmt.where(Booking.reminder_status.is_distinct_from("sent"))
    await uow.session.execute(
        stmt.values(
            reminder_status="sent" if delivered else "failed", reminder_error=None if delivered else reason
        )
    )
