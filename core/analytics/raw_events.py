"""The raw event list: what was recorded, newest first, for debugging."""

from __future__ import annotations

import json

from sqlalchemy import select

from core.analytics._queries import fetch_rows, limit_time, resolve
from core.analytics.models import events
from core.analytics.policy import READ, check_name, sees_members
from core.analytics.schemas import EventOut, RangeIn
from core.context import TenantContext
from core.pagination import Page, PageRequest, page_of
from core.presenting import from_row
from core.scoping import apply_keyset, in_context_of, keyset_tag, owned_by, where_given
from core.uow import UnitOfWork


async def list_events(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    name: str | None = None,
    client_id: str | None = None,
    q: RangeIn | None = None,
) -> Page[EventOut]:
    """The context's raw events, newest first (keyset pagination), for debugging what was
    recorded. Defaults to the last 7 days."""
    ctx.require(READ)
    rng = resolve(q or RangeIn(), default="last_7_days")
    c = events.c
    stmt = select(c.id, c.name, c.ts, c.client_id, c.source, c.person_id, c.received_at, c.properties).where(
        owned_by(events, ctx.tenant_id), c.ts >= rng.start, c.ts < rng.end
    )
    stmt = where_given(stmt, (c.name, check_name(name, "name") if name else None), (c.client_id, client_id))
    await limit_time(uow)
    filters = in_context_of(ctx.tenant_id, (name, client_id, q or RangeIn()))
    rows = await fetch_rows(uow, apply_keyset(stmt, page, c.ts, c.id, descending=True, under=filters))
    show_member = sees_members(ctx)
    items = [
        from_row(
            EventOut,
            r,
            timestamp=r.ts,
            member_id=r.person_id if show_member else None,
            untrusted_properties=r.properties if isinstance(r.properties, dict) else json.loads(r.properties),
        )
        for r in rows
    ]
    return page_of(items, page.limit, lambda e: (e.timestamp, e.id), keyset_tag(c.ts, c.id, under=filters))
