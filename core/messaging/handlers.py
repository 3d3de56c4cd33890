"""Messaging reacting to its events: delivering outbound messages, waking snoozed threads."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, text, update

from core.events import subscribe, sweep
from core.messaging import peers
from core.messaging.models import Message, MessagingSettings, Thread
from core.messaging.threads import wake_snoozed_threads
from core.observability import get_logger
from core.outbox import Event
from core.scoping import owned_by, same_tenant
from core.tenancy.models import Client
from core.uow import UnitOfWork

log = get_logger("atlilith.messaging.handlers")


class DeliveryFailed(Exception):
    """Raised so the event spine retries the delivery (and dead-letters it in the end)."""


_RECORD_FAILURE = text(
    "UPDATE messaging.messages m SET delivery_status = 'failed', failure_reason = :reason,"
    " delivery_attempts = m.delivery_attempts + 1"
    " FROM (SELECT id, delivery_status FROM messaging.messages WHERE id = :id FOR UPDATE) before"
    " WHERE m.id = before.id AND m.delivery_status <> 'sent'"
    " RETURNING before.delivery_status, m.delivery_attempts, m.thread_id, m.channel"
)


@subscribe("messaging/message.sent", "messaging/message.retried", name="messaging.deliver")
async def deliver_message(event: Event, uow: UnitOfWork) -> None:
    """Hand an outbound message to its channel's peer and record `sent` or `failed`.

    Idempotent: a message already sent is left alone, and the peer gets the message id as
    `Idempotency-Key`, so a retry after a lost answer does not send twice. A failure is
    recorded on the message in its own transaction (the spine rolls the handler's back) and
    then raised, so the spine retries it with backoff; a peer that refuses the message outright
    (4xx) is not retried: the message stays `failed` with the reason, for a person to act on."""
    message_id = uuid.UUID(str(event.data["message_id"]))
    tenant = uuid.UUID(str(event.data["tenant_id"]))
    row = (
        await uow.session.execute(
            select(Message, Thread, Client, MessagingSettings)
            .join(Thread, Thread.id == Message.thread_id)
            .join(Client, Client.id == Thread.client_id)
            .outerjoin(MessagingSettings, same_tenant(MessagingSettings, Message))
            .where(Message.id == message_id, owned_by(Message, tenant))
        )
    ).one_or_none()
    if row is None:
        log.info("delivery_skipped_gone", message_id=str(message_id))
        return
    message, thread, client, cfg = row
    if message.direction != "out" or message.delivery_status == "sent":
        return
    if message.channel == "portal":
        await _mark_sent(uow, message, None)
        return
    own = (cfg.channel_peers or {}).get(message.channel) if cfg else None
    url = own or uow.db.settings.messaging_channel_peers.get(message.channel)
    if not url:
        reason = f"no delivery peer is configured for the {message.channel!r} channel"
        await _record_failure(uow, event, message.id, reason)
        raise DeliveryFailed(reason)
    payload = _delivery_payload(message, thread, client)
    try:
        reply = await peers.post_json(
            uow.db.settings, str(url), payload, event=event.name, idempotency_key=str(message.id)
        )
    except peers.PeerError as err:
        await _record_failure(uow, event, message.id, err.reason)
        if err.permanent:
            log.warning("delivery_refused", message_id=str(message.id), reason=err.reason)
            return
        raise DeliveryFailed(err.reason) from err
    external = reply.data.get("external_id")
    await _mark_sent(uow, message, str(external)[:500] if external else None)


def _delivery_payload(message: Message, thread: Thread, client: Client) -> dict[str, Any]:
    return {
        "message_id": str(message.id),
        "thread_id": str(thread.id),
        "channel": message.channel,
        "to": {"name": client.name, "email": client.email, "phone": client.phone},
        "subject": thread.subject,
        "thread_key": thread.external_key,
        "body": message.body,
        "attachments": message.attachments or [],
        "person_id": str(message.person_id),
        "org_id": str(message.org_id) if message.org_id else None,
    }


async def _mark_sent(uow: UnitOfWork, message: Message, external_id: str | None) -> None:
    values: dict[str, Any] = {
        "delivery_status": "sent",
        "sent_at": func.now(),
        "failure_reason": None,
        "delivery_attempts": Message.delivery_attempts + 1,
    }
    if external_id:
        # Keep the peer's id for it, unless that id already names another message here.
        taken = (
            await uow.session.execute(
                select(Message.id).where(
                    owned_by(Message, message.tenant_id),
                    Message.channel == message.channel,
                    Message.external_id == external_id,
                    Message.id != message.id,
                )
            )
        ).first()
        if taken is None:
            values["external_id"] = external_id
    changed = (
        await uow.session.execute(
            update(Message)
            .where(Message.id == message.id, Message.delivery_status != "sent")
            .values(**values)
            .returning(Message.id)
        )
    ).first()
    if changed is not None:
        uow.emit(
            "messaging/message.delivered",
            {"message_id": message.id, "thread_id": message.thread_id, "channel": message.channel},
            person_id=message.person_id,
            org_id=message.org_id,
        )


async def _record_failure(uow: UnitOfWork, event: Event, message_id: uuid.UUID, reason: str) -> None:
    """In a transaction of its own: the handler's is rolled back when it raises, and the
    failure must stay visible on the message."""
    async with uow.db.service(event.person_id, event.org_id, trace_id=event.trace_id) as own:
        row = (
            await own.session.execute(_RECORD_FAILURE, {"id": message_id, "reason": reason[:1000]})
        ).one_or_none()
        if row is not None and row.delivery_status != "failed":
            own.emit(
                "messaging/message.failed",
                {
                    "message_id": message_id,
                    "thread_id": row.thread_id,
                    "channel": row.channel,
                    "reason": reason[:1000],
                    "attempts": row.delivery_attempts,
                },
                person_id=event.person_id,
                org_id=event.org_id,
            )
    log.warning("delivery_failed", message_id=str(message_id), reason=reason)


@sweep("* * * * *", name="messaging.wake_snoozed", logged_as="snoozed_threads_woken")
async def wake_snoozed(uow: UnitOfWork) -> int:
    return await wake_snoozed_threads(uow)
