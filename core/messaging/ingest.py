"""Inbound ingest from channel peers: idempotent on (channel, external_id), attributed to a client
and a thread, reopening it and superseding pending drafts when the message is news."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select, update

from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.messaging.models import Draft, Message, MessagingSettings, Thread
from core.messaging.policy import INGEST, check_channel
from core.messaging.presenters import attachments_in, preview
from core.messaging.queries import new_thread, settings_row
from core.messaging.schemas import InboundBatchIn, InboundIn, IngestItemOut, IngestOut
from core.preconditions import lock_resource
from core.scoping import in_context, insert_in_context, one_or, owned_by
from core.tenancy.matching import find_or_create_client
from core.tenancy.models import Client
from core.tenancy.schemas import ClientOut
from core.uow import UnitOfWork

# A message older than the thread's last activity by more than this is history being imported,
# not a new reply: it neither reopens the thread nor supersedes drafts.
BACKFILL_SLACK = dt.timedelta(minutes=10)


async def lock_thread_choice(
    uow: UnitOfWork, tenant: uuid.UUID, channel: str, client_id: uuid.UUID, thread_key: str | None = None
) -> None:
    """Serialize "the client's thread on this channel, else a new one" until commit: whoever
    makes that choice (an inbound message, a booking reminder) takes this one key, so two at
    once for one client make one thread."""
    await lock_resource(uow, "mthread", tenant, channel, client_id, thread_key or "")


def _prefixed(err: ValidationFailed, prefix: str) -> ValidationFailed:
    err.errors = [FieldIssue(f"{prefix}{e.field}", e.message, e.code) for e in err.errors]
    return err


async def ingest(ctx: TenantContext, uow: UnitOfWork, data: InboundIn | InboundBatchIn) -> IngestOut:
    """Inbound messages from a channel peer (one or a batch, all or nothing). Idempotent on
    (channel, external_id): a message already ingested is reported as a duplicate, unchanged."""
    ctx.require(INGEST)
    items = data.messages if isinstance(data, InboundBatchIn) else [data]
    cfg = await settings_row(ctx, uow)
    results: list[IngestItemOut] = []
    for i, item in enumerate(items):
        prefix = f"messages.{i}." if isinstance(data, InboundBatchIn) else ""
        try:
            results.append(await _ingest_one(ctx, uow, cfg, item))
        except ValidationFailed as err:
            raise _prefixed(err, prefix) from err
    created = sum(r.outcome == "created" for r in results)
    return IngestOut(results=results, created=created, duplicates=len(results) - created)


async def _ingest_one(
    ctx: TenantContext, uow: UnitOfWork, cfg: MessagingSettings | None, item: InboundIn
) -> IngestItemOut:
    channel = check_channel(uow, item.channel)
    # Serialize ingests of one external id: a peer retrying in parallel makes one message.
    await lock_resource(uow, "mext", ctx.tenant_id, channel, item.external_id)
    duplicate = await _already_ingested(ctx, uow, channel, item.external_id)
    if duplicate is not None:
        return duplicate
    client, client_created = await _client_of(ctx, uow, item)
    now = dt.datetime.now(dt.UTC)
    occurred = min(item.occurred_at or now, now)
    thread = await _thread_for_inbound(ctx, uow, client.id, channel, item)
    thread_created = thread is None
    if thread is None:
        thread = await new_thread(
            ctx,
            uow,
            client_id=client.id,
            channel=channel,
            subject=item.subject,
            agent_mode=cfg.default_agent_mode if cfg else "draft_only",
            external_key=item.thread_key,
            last_activity_at=occurred,
        )
    is_new = thread_created or occurred >= thread.last_activity_at - BACKFILL_SLACK
    # Imported history is not news: it arrives read.
    message = await _insert_inbound(ctx, uow, thread, item, occurred, read_at=None if is_new else now)
    await _move_thread_on(ctx, uow, thread, item, occurred, is_new)
    uow.emit(
        "messaging/message.received",
        {
            "message_id": message.id,
            "thread_id": thread.id,
            "client_id": client.id,
            "channel": channel,
            "external_id": item.external_id,
        },
    )
    if is_new:
        await _supersede_drafts(ctx, uow, thread.id, message.id, occurred)
    return IngestItemOut(
        external_id=item.external_id,
        outcome="created",
        message_id=message.id,
        thread_id=thread.id,
        client_id=client.id,
        client_created=client_created,
        thread_created=thread_created,
    )


async def _already_ingested(
    ctx: TenantContext, uow: UnitOfWork, channel: str, external_id: str
) -> IngestItemOut | None:
    """The duplicate outcome when this channel's external id was ingested before, else None."""
    existing = (
        await uow.session.execute(
            select(Message.id, Message.thread_id, Thread.client_id)
            .join(Thread, Thread.id == Message.thread_id)
            .where(
                in_context(Message, ctx),
                Message.channel == channel,
                Message.external_id == external_id,
            )
        )
    ).one_or_none()
    if existing is None:
        return None
    return IngestItemOut(
        external_id=external_id,
        outcome="duplicate",
        message_id=existing[0],
        thread_id=existing[1],
        client_id=existing[2],
        client_created=False,
        thread_created=False,
    )


async def _client_of(ctx: TenantContext, uow: UnitOfWork, item: InboundIn) -> tuple[ClientOut, bool]:
    """The client who wrote, matched or created; field errors name the item's `client_*` fields.
    A message naming our thread without a contact is from that thread's client."""
    if item.thread_id is not None and not (item.client_email or item.client_phone):
        mismatch = ValidationFailed(
            "thread_id names no thread in this context",
            code="thread_mismatch",
            hint="give client_email or client_phone, or a thread_id of this context",
            errors=[FieldIssue("thread_id", "no such thread", "mismatch")],
        )
        own = await one_or(
            uow,
            select(Client)
            .join(Thread, Thread.client_id == Client.id)
            .where(Thread.id == item.thread_id, in_context(Thread, ctx)),
            mismatch,
        )
        return ClientOut.model_validate(own), False
    try:
        return await find_or_create_client(
            ctx, uow, name=item.client_name, email=item.client_email, phone=item.client_phone
        )
    except ValidationFailed as err:
        err.errors = [FieldIssue(f"client_{e.field}", e.message, e.code) for e in err.errors]
        raise


async def _insert_inbound(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread: Thread,
    item: InboundIn,
    occurred: dt.datetime,
    *,
    read_at: dt.datetime | None,
) -> Message:
    return await insert_in_context(
        uow,
        Message,
        ctx,
        thread_id=thread.id,
        direction="in",
        channel=thread.channel,
        author_kind="client",
        body=item.body,
        attachments=attachments_in(item.attachments),
        external_id=item.external_id,
        occurred_at=occurred,
        read_at=read_at,
    )


async def _move_thread_on(
    ctx: TenantContext, uow: UnitOfWork, thread: Thread, item: InboundIn, occurred: dt.datetime, is_new: bool
) -> None:
    """Count the message on its thread; news also counts as unread, sets the preview and reopens."""
    values: dict[str, Any] = {
        "message_count": Thread.message_count + 1,
        "last_activity_at": func.greatest(Thread.last_activity_at, occurred),
        "last_inbound_at": func.greatest(func.coalesce(Thread.last_inbound_at, occurred), occurred),
        "updated_at": func.now(),
    }
    if is_new:
        values["unread_count"] = Thread.unread_count + 1
        values["preview"] = preview(item.body, item.attachments)
        # A client reply always reopens, whatever the status (pending, snoozed, closed).
        if thread.status != "open":
            values["status"], values["snoozed_until"] = "open", None
            uow.emit(
                "messaging/thread.status_changed",
                {"thread_id": thread.id, "from": thread.status, "to": "open", "reason": "client_replied"},
            )
    if item.subject and not thread.subject:
        values["subject"] = item.subject[:500]
    await uow.session.execute(
        update(Thread).where(Thread.id == thread.id, in_context(Thread, ctx)).values(**values)
    )


async def _thread_for_inbound(
    ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID, channel: str, item: InboundIn
) -> Thread | None:
    """The thread an inbound message belongs to: the one the peer names, else the channel's
    conversation (`thread_key`), else the client's latest thread on this channel. None = new."""
    tenant = ctx.tenant_id
    if item.thread_id is not None:
        thread = (
            await uow.session.execute(
                select(Thread).where(Thread.id == item.thread_id, owned_by(Thread, tenant)).with_for_update()
            )
        ).scalar_one_or_none()
        if thread is None or thread.client_id != client_id or thread.channel != channel:
            raise ValidationFailed(
                "thread_id names no thread of this client on this channel in this context",
                code="thread_mismatch",
                hint="omit thread_id (the thread is then found by thread_key or the client)",
                errors=[FieldIssue("thread_id", "not this client's thread on this channel", "mismatch")],
            )
        return thread
    # Each client has their own thread even in a group conversation: messages are attributed
    # to the thread's client. The lock makes two first messages of one conversation one thread.
    await lock_thread_choice(uow, tenant, channel, client_id, item.thread_key)
    if item.thread_key:
        stmt = select(Thread).where(
            owned_by(Thread, tenant),
            Thread.channel == channel,
            Thread.client_id == client_id,
            Thread.external_key == item.thread_key,
        )
    else:
        stmt = (
            select(Thread)
            .where(owned_by(Thread, tenant), Thread.channel == channel, Thread.client_id == client_id)
            .order_by(Thread.last_activity_at.desc(), Thread.id.desc())
            .limit(1)
        )
    return (await uow.session.execute(stmt.with_for_update())).scalar_one_or_none()


async def _supersede_drafts(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, message_id: uuid.UUID, occurred: dt.datetime
) -> None:
    """Pending drafts answer a conversation that has moved on: a newer client message makes them
    superseded (generate or write a new one)."""
    superseded = (
        await uow.session.execute(
            update(Draft)
            .where(
                Draft.thread_id == thread_id,
                in_context(Draft, ctx),
                Draft.status == "pending",
                Draft.created_at <= occurred + BACKFILL_SLACK,
            )
            .values(status="superseded", superseded_by_message_id=message_id, updated_at=func.now())
            .returning(Draft.id)
        )
    ).scalars()
    for draft_id in superseded:
        uow.emit(
            "messaging/draft.superseded",
            {"draft_id": draft_id, "thread_id": thread_id, "message_id": message_id},
        )
