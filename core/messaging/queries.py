"""Loaders shared by the messaging modules: the context's settings row, a thread in context
(with its client and assignee) and a new thread."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Protocol, cast

from sqlalchemy import Select, and_, bindparam, func, select
from sqlalchemy.types import Uuid

from core.context import TenantContext
from core.errors import NotFound
from core.messaging.models import MessagingSettings, Thread
from core.messaging.policy import PeerSettings, Reachable
from core.scoping import in_context, insert_in_context, not_in_context, owned_by, row_or, same_tenant, scoped
from core.tenancy.models import Client, Person
from core.uow import UnitOfWork


def _thread_not_found() -> NotFound:
    return not_in_context("thread", "list threads ([[messaging.list_threads]]) in the right context")


async def settings_row(ctx: TenantContext, uow: UnitOfWork) -> MessagingSettings | None:
    return (await uow.session.execute(scoped(MessagingSettings, ctx))).scalar_one_or_none()


def thread_select(ctx: TenantContext) -> Select[Thread, Client, Person]:
    return (
        select(Thread, Client, Person)
        .join(Client, and_(Client.id == Thread.client_id, same_tenant(Client, Thread)))
        .outerjoin(Person, Person.id == Thread.assignee_id)
        .where(in_context(Thread, ctx))
    )


async def thread_row(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, *, lock: bool = False
) -> tuple[Thread, Client, Person | None]:
    stmt = thread_select(ctx).where(Thread.id == thread_id)
    thread, client, assignee = await row_or(
        uow, stmt.with_for_update(of=Thread) if lock else stmt, _thread_not_found()
    )
    return thread, client, assignee


class ThreadState(Protocol):
    """What a send reads of its thread: a `Thread` row, or the send's one-row read."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def channel(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def agent_mode(self) -> str: ...
    @property
    def unread_count(self) -> int: ...
    @property
    def client_id(self) -> uuid.UUID: ...
    @property
    def client_link_active(self) -> bool: ...


class SendTarget(ThreadState, PeerSettings, Reachable, Protocol):
    """The thread, its client's addresses and the context's channel peers, as one row."""


# Columns, not entities: a send reads a few values of the thread, its client and the context's
# settings, and loading the three rows as ORM objects (a loader per column, the identity map)
# cost more Python than the rest of the send's own work. Built once, its values bound at
# execution; the tenant filter is `owned_by`'s, given a parameter.
_FOR_SEND = (
    select(
        Thread.id,
        Thread.channel,
        Thread.status,
        Thread.agent_mode,
        Thread.unread_count,
        Thread.client_id,
        Thread.client_link_active,
        Client.email,
        Client.phone,
        MessagingSettings.channel_peers,
    )
    .join(Client, and_(Client.id == Thread.client_id, same_tenant(Client, Thread)))
    .outerjoin(MessagingSettings, same_tenant(MessagingSettings, Thread))
    .where(
        Thread.id == bindparam("for_send_thread", type_=Uuid()),
        owned_by(Thread, cast(uuid.UUID, bindparam("for_send_tenant", type_=Uuid()))),
    )
)


async def thread_for_send(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID) -> SendTarget:
    """The thread, its client and the context's settings, in one statement and one row (its
    `channel_peers` is None when the context has no settings row)."""
    row = (
        await uow.rows(_FOR_SEND, {"for_send_thread": thread_id, "for_send_tenant": ctx.tenant_id})
    ).one_or_none()
    if row is None:
        raise _thread_not_found()
    return cast(SendTarget, row)


async def new_thread(
    ctx: TenantContext,
    uow: UnitOfWork,
    *,
    client_id: uuid.UUID,
    channel: str,
    subject: str,
    agent_mode: str,
    external_key: str | None = None,
    last_activity_at: dt.datetime | None = None,
) -> Thread:
    thread = await insert_in_context(
        uow,
        Thread,
        ctx,
        client_id=client_id,
        channel=channel,
        subject=subject[:500],
        agent_mode=agent_mode,
        external_key=external_key,
        last_activity_at=last_activity_at or func.now(),
    )
    uow.emit(
        "messaging/thread.created",
        {"thread_id": thread.id, "client_id": client_id, "channel": channel, "agent_mode": agent_mode},
    )
    return thread
