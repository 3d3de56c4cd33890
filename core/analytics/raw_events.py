"""The raw event list: what was recorded, newest first, for debugging."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

from core.analytics._queries import fetch_rows, limit_time, resolve
from core.analytics.policy import READ, check_name, sees_members
from core.analytics.schemas import EventOut, RangeIn
from core.context import TenantContext
from core.errors import ValidationFailed
from core.pagination import Page, PageRequest, decode_cursor, page_of
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
    params: dict[str, Any] = {
        "tenant": ctx.tenant_id,
        "start": rng.start,
        "end": rng.end,
        "limit": page.limit + 1,
    }
    where = ["tenant_id = :tenant", "ts >= :start", "ts < :end"]
    if name:
        params["name"] = check_name(name, "name")
        where.append("name = :name")
    if client_id:
        params["client"] = client_id
        where.append("client_id = :client")
    if page.cursor:
        ts, eid = decode_cursor(page.cursor, 2)
        if not isinstance(ts, dt.datetime) or not isinstance(eid, uuid.UUID):
            raise ValidationFailed("the cursor is not valid for this list", code="invalid_cursor")
        params.update(cts=ts, cid=eid)
        where.append("(ts, id) < (:cts, :cid)")
    await limit_time(uow)
    rows = await fetch_rows(
        uow,
        "SELECT id, name, ts, client_id, source, person_id, received_at, properties FROM analytics.events"
        f" WHERE {' AND '.join(where)} ORDER BY ts DESC, id DESC LIMIT :limit",
        params,
    )
    show_member = sees_members(ctx)
    items = [
        EventOut(
            id=r.id,
            name=r.name,
            timestamp=r.ts,
            client_id=r.client_id,
            source=r.source,
            member_id=r.person_id if show_member else None,
            received_at=r.received_at,
            untrusted_properties=r.properties if isinstance(r.properties, dict) else json.loads(r.properties),
        )
        for r in rows
    ]
    return page_of(items, page.limit, lambda e: (e.timestamp, e.id))
