"""The client's conversation link: how a client reads and answers a `portal`-channel thread
without an account (`/c/{token}`, servers.public).

The first outbound message of a portal thread issues a link; the provider reads it with
`client_link` (to hand it over) and can `revoke_client_link` it; the next outbound message then
issues a new one (the old one never opens again). The token is derived — an HMAC-SHA256 over the
thread id and the link's generation, keyed from the platform secret — so only the generation and
whether it is live are stored, and a token is checked in constant time.

A reply is an inbound message through the same `ingest` operation a channel peer uses
(idempotent on the form's key), so it lands in the provider's inbox, counts as unread, reopens
the thread and wakes the agent per the thread's agent mode, exactly as a peer's message would.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from core.config import Settings
from core.context import TenantContext, service_context
from core.errors import NotFound
from core.messaging.ingest import ingest
from core.messaging.models import Message, Thread
from core.messaging.policy import INGEST, READ, WRITE
from core.messaging.queries import ThreadState, thread_row
from core.messaging.schemas import MAX_BODY_CHARS, InboundIn
from core.scoping import in_context, row_or
from core.tenancy.models import Client, Org, Person
from core.uow import Database, UnitOfWork
from core.validation import Input

__all__ = [
    "ClientLinkOut",
    "ConversationMessage",
    "ConversationOut",
    "client_link",
    "conversation_reply",
    "conversation_view",
    "revoke_client_link",
]

# What the page shows of a long conversation: the latest messages.
SHOWN = 200
_MAC_BYTES = 24


class ClientLinkOut(BaseModel):
    thread_id: uuid.UUID
    active: bool
    url: str | None = Field(description="For the client; null when none is live.")
    token: str | None
    generation: int = Field(description="Counts re-issues.")


class ConversationMessage(BaseModel):
    id: uuid.UUID
    from_client: bool
    author: str
    body: str
    at: dt.datetime


class ConversationOut(BaseModel):
    provider: str
    client: str
    subject: str
    messages: list[ConversationMessage]


def _key(settings: Settings) -> bytes:
    return hmac.new(
        settings.resolved_jwt_secret().encode(), b"messaging-client-link", hashlib.sha256
    ).digest()


def _mac(settings: Settings, payload: bytes) -> bytes:
    return hmac.new(_key(settings), payload, hashlib.sha256).digest()[:_MAC_BYTES]


def token_for(settings: Settings, thread_id: uuid.UUID, generation: int) -> str:
    payload = thread_id.bytes + generation.to_bytes(4, "big")
    return base64.urlsafe_b64encode(payload + _mac(settings, payload)).decode().rstrip("=")


def _unknown() -> NotFound:
    return NotFound(
        "no conversation for this link", code="conversation_link_invalid", hint="ask the provider"
    )


def _read(settings: Settings, token: str) -> tuple[uuid.UUID, int]:
    try:
        raw = base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4))
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise _unknown() from exc
    if len(raw) != 20 + _MAC_BYTES:
        raise _unknown()
    payload, mac = raw[:20], raw[20:]
    if not hmac.compare_digest(mac, _mac(settings, payload)):
        raise _unknown()
    return uuid.UUID(bytes=payload[:16]), int.from_bytes(payload[16:], "big")


def _out(settings: Settings, thread: Thread) -> ClientLinkOut:
    live = thread.client_link_active and thread.client_link_generation > 0
    token = token_for(settings, thread.id, thread.client_link_generation) if live else None
    return ClientLinkOut(
        thread_id=thread.id,
        active=live,
        url=f"{settings.base_url}/c/{token}" if token else None,
        token=token,
        generation=thread.client_link_generation,
    )


# What an outbound portal message changes on its thread when no link is live: a new link.
LINK_ISSUED: dict[str, object] = {
    "client_link_generation": Thread.client_link_generation + 1,
    "client_link_active": True,
}


def issues_link(thread: ThreadState) -> bool:
    """Whether an outbound message on this thread issues a new client link (`LINK_ISSUED`)."""
    return thread.channel == "portal" and not thread.client_link_active


async def client_link(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID) -> ClientLinkOut:
    """The thread's client link, to give to the client (a portal thread's first outbound
    message issues it; after a revocation the next one issues a new link)."""
    ctx.require(WRITE)
    thread = (await thread_row(ctx, uow, thread_id))[0]
    return _out(uow.db.settings, thread)


async def revoke_client_link(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID) -> ClientLinkOut:
    """Stop the client link from opening the conversation (idempotent). The next message sent
    on the thread issues a new link."""
    ctx.require(WRITE)
    thread = (await thread_row(ctx, uow, thread_id, lock=True))[0]
    if thread.client_link_active:
        await uow.session.execute(
            update(Thread)
            .where(Thread.id == thread.id, in_context(Thread, ctx))
            .values(client_link_active=False, updated_at=func.now())
        )
        thread.client_link_active = False
        uow.emit(
            "messaging/thread.client_link_revoked",
            {"thread_id": thread.id, "generation": thread.client_link_generation},
        )
    return _out(uow.db.settings, thread)


@asynccontextmanager
async def _opened(
    db: Database, token: str
) -> AsyncIterator[tuple[TenantContext, UnitOfWork, Thread, Client]]:
    """The thread a live link opens, in a transaction narrowed to its tenant."""
    thread_id, generation = _read(db.settings, token)
    async with db.system() as uow:
        thread, client = await row_or(
            uow,
            select(Thread, Client).join(Client, Client.id == Thread.client_id).where(Thread.id == thread_id),
            _unknown(),
        )
        if not thread.client_link_active or thread.client_link_generation != generation:
            raise _unknown()
        await uow.act_as_service(thread.person_id, thread.org_id)
        ctx = service_context(thread.person_id, thread.org_id, frozenset({READ, INGEST}), uow.trace_id)
        yield ctx, uow, thread, client


async def _provider_name(uow: UnitOfWork, thread: Thread) -> str:
    if thread.org_id is not None:
        return str((await uow.session.execute(select(Org.name).where(Org.id == thread.org_id))).scalar_one())
    return str(
        (
            await uow.session.execute(select(Person.display_name).where(Person.id == thread.person_id))
        ).scalar_one()
    )


async def conversation_view(db: Database, token: str) -> ConversationOut:
    """What the client sees: the provider, and the thread's messages (latest 200, in order);
    failed deliveries and drafts are not the client's to see."""
    async with _opened(db, token) as (ctx, uow, thread, client):
        provider = await _provider_name(uow, thread)
        rows = (
            await uow.session.execute(
                select(Message)
                .where(
                    Message.thread_id == thread.id,
                    in_context(Message, ctx),
                    (Message.direction == "in") | (Message.delivery_status != "failed"),
                )
                .order_by(Message.occurred_at.desc(), Message.id.desc())
                .limit(SHOWN)
            )
        ).scalars()
        messages = [
            ConversationMessage(
                id=m.id,
                from_client=m.direction == "in",
                author="You" if m.direction == "in" else provider,
                body=m.body,
                at=m.occurred_at,
            )
            for m in rows
        ]
        return ConversationOut(
            provider=provider, client=client.name, subject=thread.subject, messages=messages[::-1]
        )


class ReplyIn(Input):
    body: str = Field(min_length=1, max_length=MAX_BODY_CHARS)
    key: str = Field(min_length=8, max_length=100, description="The form's idempotency key.")


async def conversation_reply(db: Database, token: str, data: ReplyIn) -> uuid.UUID:
    """The client's reply, ingested as an inbound portal message of the thread (a resent form
    with the same key makes one message). Returns the message id."""
    async with _opened(db, token) as (ctx, uow, thread, _):
        item = InboundIn(
            channel="portal",
            external_id=f"conversation:{thread.id}:{data.key}",
            thread_id=thread.id,
            body=data.body,
        )
        result = (await ingest(ctx, uow, item)).results[0]
        assert result.message_id is not None
        return result.message_id
