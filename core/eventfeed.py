"""The context's own events, for a live client (the portal's inbox): read from the outbox.

The outbox is the relay's table (row-level security lets only the system read it), so this
module reads it as the system and applies the tenant wall itself, explicitly: an org context
sees the events emitted in that org, a personal context those of the person with no org. Only
event kinds the credential's scopes may read are served, and events carry ids, never text.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import uuid
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, func, or_, select

from core.context import TenantContext
from core.errors import ValidationFailed
from core.outbox import outbox_table
from core.uow import UnitOfWork

__all__ = ["STREAMABLE", "FeedBatch", "FeedEvent", "latest_seq", "read_events", "resolve_kinds"]

# Event-name pattern -> the scope that may read it. Kinds not listed are never streamed.
STREAMABLE: dict[str, str] = {
    "messaging/message.*": "messaging:read",
    "messaging/draft.*": "messaging:read",
    "messaging/thread.*": "messaging:read",
}

MAX_BATCH = 200


class FeedEvent(BaseModel):
    seq: int = Field(description="Position in the stream; reconnect with `after` = the last one seen.")
    id: uuid.UUID
    name: str = Field(description="`{domain}/{entity}.{action}`, e.g. `messaging/message.received`.")
    data: dict[str, Any] = Field(description="The event's ids (never message text).")
    at: dt.datetime


def resolve_kinds(ctx: TenantContext, kinds: list[str] | None) -> list[str]:
    """The streamable patterns asked for (default: all), each checked against the scopes."""
    wanted = kinds or list(STREAMABLE)
    unknown = [k for k in wanted if k not in STREAMABLE]
    if unknown:
        raise ValidationFailed(
            f"these event kinds cannot be streamed: {', '.join(unknown)}",
            code="unknown_event_kind",
            hint=f"ask for some of: {', '.join(STREAMABLE)}",
        )
    for kind in wanted:
        ctx.require(STREAMABLE[kind])
    return wanted


def _own(ctx: TenantContext) -> Any:
    if ctx.org_id is not None:
        return outbox_table.c.org_id == ctx.org_id
    return and_(outbox_table.c.org_id.is_(None), outbox_table.c.person_id == ctx.person_id)


async def latest_seq(ctx: TenantContext, uow: UnitOfWork) -> int:
    """Where a new stream starts: after every event that exists now (in any context — the
    number says nothing about other tenants beyond that events happen)."""
    await uow.act_as_system()
    value = (await uow.session.execute(select(func.max(outbox_table.c.seq)))).scalar_one_or_none()
    return int(value or 0)


class FeedBatch(BaseModel):
    events: list[FeedEvent]
    cursor: int = Field(description="Ask for events after this next time.")


async def read_events(ctx: TenantContext, uow: UnitOfWork, after: int, kinds: list[str]) -> FeedBatch:
    """This context's events of the given kinds with `seq > after`, oldest first, and the
    cursor to continue from (past other tenants' events too, so an idle stream stays cheap)."""
    await uow.act_as_system()  # the outbox is the relay's; the tenant filter below is the wall
    o = outbox_table.c
    high = int((await uow.session.execute(select(func.max(o.seq)))).scalar_one_or_none() or 0)
    rows = (
        await uow.session.execute(
            select(o.seq, o.id, o.name, o.data, o.created_at)
            .where(
                o.seq > after,
                o.seq <= high,
                _own(ctx),
                or_(*(o.name.like(k.replace("*", "%")) for k in kinds)),
            )
            .order_by(o.seq)
            .limit(MAX_BATCH)
        )
    ).all()
    events = [
        FeedEvent(seq=r.seq, id=r.id, name=r.name, data=dict(r.data), at=r.created_at)
        for r in rows
        if any(fnmatch.fnmatchcase(r.name, k) for k in kinds)
    ]
    cursor = rows[-1].seq if len(rows) == MAX_BATCH else max(high, after)
    return FeedBatch(events=events, cursor=cursor)
