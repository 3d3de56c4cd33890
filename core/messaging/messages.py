"""Messages: outbound sends (queued, delivered after commit by the handler), retries of a failed
delivery, and read markers on the client's messages."""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Any
from typing import cast as cast_type

from sqlalchemy import CTE, ColumnElement, Row, and_, bindparam, func, select, true, tuple_, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.sql.selectable import ExecutableReturnsRows
from sqlalchemy.types import Uuid

from core.context import PrincipalKind, TenantContext
from core.errors import Conflict, FieldIssue, NotFound
from core.idempotency import idempotent_operation
from core.messaging.conversation import LINK_ISSUED, issues_link
from core.messaging.models import Message, Thread
from core.messaging.policy import WRITE, agent_may, is_agent, require_deliverable
from core.messaging.presenters import attachments_in, message_out, preview, thread_out
from core.messaging.queries import ThreadState, thread_for_send, thread_row
from core.messaging.schemas import AttachmentIn, MessageOut, ReadIn, SendIn, ThreadOut
from core.outbox import EVENT_CTE
from core.scoping import in_context, not_in_context, owned_by
from core.uow import UnitOfWork


async def mark_read(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, data: ReadIn) -> ThreadOut:
    """Read markers: mark the client's messages read (up to one of them), or the newest unread."""
    ctx.require(WRITE)
    thread, client, assignee = await thread_row(ctx, uow, thread_id, lock=True)
    inbound = and_(Message.thread_id == thread.id, in_context(Message, ctx), Message.direction == "in")
    bound = None
    if data.up_to_message_id is not None:
        bound = (
            await uow.session.execute(
                select(Message.occurred_at, Message.id).where(
                    Message.id == data.up_to_message_id,
                    Message.thread_id == thread.id,
                    in_context(Message, ctx),
                )
            )
        ).one_or_none()
        if bound is None:
            raise NotFound(
                "no such message in this thread",
                code="message_not_found",
                hint="read the thread's messages with [[messaging.get_thread]]",
                errors=[FieldIssue("up_to_message_id", "not in this thread", "not_found")],
            )
    if data.unread:
        newest = select(Message.id).where(inbound)
        if bound is not None:
            newest = newest.where(tuple_(Message.occurred_at, Message.id) <= tuple_(*bound))
        newest = newest.order_by(Message.occurred_at.desc(), Message.id.desc()).limit(1)
        await uow.session.execute(
            update(Message).where(Message.id == newest.scalar_subquery()).values(read_at=None)
        )
    else:
        stmt = update(Message).where(inbound, Message.read_at.is_(None)).values(read_at=func.now())
        if bound is not None:
            stmt = stmt.where(tuple_(Message.occurred_at, Message.id) <= tuple_(*bound))
        await uow.session.execute(stmt)
    unread = (
        select(func.count()).select_from(Message).where(inbound, Message.read_at.is_(None)).scalar_subquery()
    )
    thread = (
        await uow.session.execute(
            update(Thread)
            .where(Thread.id == thread.id, in_context(Thread, ctx))
            .values(unread_count=unread)
            .returning(Thread),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    return thread_out(thread, client, assignee)


async def append_outbound(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread: ThreadState,
    body: str,
    attachments: list[AttachmentIn],
    *,
    draft_id: uuid.UUID | None = None,
    author_kind: str | None = None,
    status: str | None = None,
) -> Row[Any]:
    """Queue an outbound message and move the thread on; the delivery handler takes it from the
    `messaging/message.sent` event. A person replying has read what came before. Returns the
    message as a row (its columns, not an ORM object: the send presents it and reads nothing
    else back; a thread the session holds is not refreshed by it)."""
    stmt, params = _outbound(
        ctx, uow, thread, body, attachments, draft_id, author_kind, status, entities=False
    )
    return (await uow.rows(stmt, params)).one()


async def append_outbound_with_thread(
    ctx: TenantContext, uow: UnitOfWork, thread: Thread, body: str, attachments: list[AttachmentIn]
) -> tuple[Message, Thread]:
    """`append_outbound`, with the message and the thread as they are after it, as ORM objects
    (a thread created and sent in one request presents the thread too)."""
    stmt, params = _outbound(ctx, uow, thread, body, attachments, None, None, None, entities=True)
    row = (await uow.session.execute(stmt, params, execution_options={"populate_existing": True})).one()
    return row[0], row[1]


def _author_kind(ctx: TenantContext) -> str:
    """Who a message is shown as written by: the platform's own (a booking's reminder, sent by
    a handler in a service context) is `system`, never the provider, and reads nothing."""
    if ctx.principal.kind is PrincipalKind.SERVICE:
        return "system"
    return "agent" if is_agent(ctx) else "person"


def _outbound(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread: ThreadState,
    body: str,
    attachments: list[AttachmentIn],
    draft_id: uuid.UUID | None,
    author_kind: str | None,
    status: str | None,
    *,
    entities: bool,
) -> tuple[ExecutableReturnsRows, dict[str, Any]]:
    """The send's statement and its parameters, its events queued (one of them taken into the
    statement when it is the only one)."""
    kind = author_kind or _author_kind(ctx)
    reads = kind == "person" and thread.unread_count > 0
    moves_status = status is not None and status != thread.status
    message_id = uuid.uuid4()
    values: dict[str, Any] = {
        "send_tenant": ctx.tenant_id,
        "send_thread": thread.id,
        "send_message_id": message_id,
        "send_person_id": ctx.person_id,
        "send_org_id": ctx.org_id,
        "send_channel": thread.channel,
        "send_author_kind": kind,
        "send_author_api_key_id": ctx.principal.api_key_id,
        "send_body": body,
        "send_attachments": attachments_in(attachments),
        "send_draft_id": draft_id,
        "send_preview": preview(body, attachments),
    }
    if moves_status:
        values["send_status"] = status
        uow.emit(
            "messaging/thread.status_changed",
            {"thread_id": thread.id, "from": thread.status, "to": status, "reason": "sent"},
        )
    uow.emit(
        "messaging/message.sent",
        {
            "message_id": message_id,
            "thread_id": thread.id,
            "client_id": thread.client_id,
            "channel": thread.channel,
            "author_kind": kind,
            "draft_id": draft_id,
        },
    )
    # The send's statement writes its event too (the message's id is ours, so the event is
    # known before it runs): no outbox INSERT of its own at commit.
    event = uow.take_event()
    stmt = _send_statement(
        reads=reads,
        moves_status=moves_status,
        issues_link=issues_link(thread),
        event=event is not None,
        entities=entities,
    )
    return stmt, values | (event or {})


# The send's values are bound at execution, so its statement is built once per shape (building
# it -- two CTEs over every column of both tables -- cost more than the rest of the send's own
# Python). The tenant filter is still `in_context`'s comparison, given a parameter. Every
# parameter is named `send_*`: executed through the ORM, a parameter named after a column of an
# UPDATE's table would be added to what that UPDATE sets.
_SEND_TENANT = cast_type(uuid.UUID, bindparam("send_tenant", type_=Uuid()))
_SEND_THREAD = bindparam("send_thread", type_=Uuid())


def _returned(model: type[Message] | type[Thread]) -> list[ColumnElement[Any]]:
    # Not the generated search vector: nobody reads it back, and it is the largest column.
    return [c for c in model.__table__.c if c.name != "search"]


@lru_cache(maxsize=32)
def _send_statement(
    *, reads: bool, moves_status: bool, issues_link: bool, event: bool, entities: bool
) -> ExecutableReturnsRows:
    """One statement: the message, the read markers, the thread's counters and, with `event`,
    the outbox row (the message's `occurred_at` is now(), the transaction's time, which the
    thread's activity takes too). It answers the message's columns, or with `entities` the
    message and the thread as ORM objects. Either way a row only when both the message and the
    thread's update were written (the join), so a thread gone from the context answers none."""
    sent = _insert_outbound()
    moved = _thread_after_send(reads=reads, moves_status=moves_status, issues_link=issues_link)
    both = select(sent, moved) if entities else select(*sent.c)
    both = both.select_from(sent.join(moved, true()))
    if reads:
        both = both.add_cte(_reads())
    if event:
        both = both.add_cte(EVENT_CTE)
    return select(Message, Thread).from_statement(both) if entities else both


def _insert_outbound() -> CTE:
    return (
        insert(Message)
        .values(
            id=bindparam("send_message_id", type_=Uuid()),
            person_id=bindparam("send_person_id", type_=Uuid()),
            org_id=bindparam("send_org_id", type_=Uuid()),
            thread_id=_SEND_THREAD,
            direction="out",
            channel=bindparam("send_channel"),
            author_kind=bindparam("send_author_kind"),
            author_person_id=bindparam("send_person_id", type_=Uuid()),
            author_api_key_id=bindparam("send_author_api_key_id", type_=Uuid()),
            body=bindparam("send_body"),
            attachments=bindparam("send_attachments", type_=JSONB),
            delivery_status="queued",
            draft_id=bindparam("send_draft_id", type_=Uuid()),
        )
        .returning(*_returned(Message))
        .cte("sent")
    )


def _reads() -> CTE:
    """A person replying has read the client's messages."""
    return (
        update(Message)
        .where(
            Message.thread_id == _SEND_THREAD,
            owned_by(Message, _SEND_TENANT),
            Message.direction == "in",
            Message.read_at.is_(None),
        )
        .values(read_at=func.now())
        .cte("read")
    )


def _thread_after_send(*, reads: bool, moves_status: bool, issues_link: bool) -> CTE:
    """Count the message on its thread, clear its unread count when a person replies, and apply
    the status the sender chose."""
    values: dict[str, Any] = {
        "message_count": Thread.message_count + 1,
        "last_activity_at": func.greatest(Thread.last_activity_at, func.now()),
        "preview": bindparam("send_preview"),
        "updated_at": func.now(),
    }
    if issues_link:
        values.update(LINK_ISSUED)
    if reads:
        values["unread_count"] = 0
    if moves_status:
        values["status"], values["snoozed_until"] = bindparam("send_status"), None
    return (
        update(Thread)
        .where(Thread.id == _SEND_THREAD, owned_by(Thread, _SEND_TENANT))
        .values(**values)
        .returning(*_returned(Thread))
        .cte("moved")
    )


@idempotent_operation("messaging.send")
async def send_message(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread_id: uuid.UUID,
    data: SendIn,
    idempotency_key: str | None = None,
) -> MessageOut:
    """Send a message to the thread's client on the thread's channel (delivered after commit)."""
    ctx.require(WRITE)
    # One row: the thread's state, its client's addresses and the context's channel peers.
    target = await thread_for_send(ctx, uow, thread_id)
    agent_may(ctx, target.agent_mode, "send")
    require_deliverable(uow, target, target.channel, target)
    message = await append_outbound(ctx, uow, target, data.body, data.attachments, status=data.status)
    return message_out(message)


async def retry_delivery(ctx: TenantContext, uow: UnitOfWork, message_id: uuid.UUID) -> MessageOut:
    """Queue a failed outbound message for delivery again (same message, same idempotency key
    for the peer, so a peer that did get it the first time does not send it twice)."""
    ctx.require(WRITE)
    row = (
        await uow.session.execute(
            select(Message, Thread.agent_mode)
            .join(Thread, Thread.id == Message.thread_id)
            .where(Message.id == message_id, in_context(Message, ctx))
        )
    ).one_or_none()
    if row is None:
        raise not_in_context("message", "read the thread's messages with [[messaging.get_thread]]")
    message, mode = row
    agent_may(ctx, mode, "send")
    requeued = (
        await uow.session.execute(
            update(Message)
            .where(
                Message.id == message.id,
                in_context(Message, ctx),
                Message.delivery_status == "failed",
            )
            .values(delivery_status="queued", failure_reason=None)
            .returning(Message),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()
    if requeued is None:
        raise Conflict(
            "only a failed outbound message can be retried; this one is "
            + (message.delivery_status or "inbound"),
            code="message_not_failed",
            hint="a queued message is still being delivered and a sent one arrived: nothing to retry",
            extra={"delivery_status": message.delivery_status},
        )
    uow.emit(
        "messaging/message.retried",
        {"message_id": message.id, "thread_id": message.thread_id, "channel": message.channel},
    )
    return message_out(requeued)
