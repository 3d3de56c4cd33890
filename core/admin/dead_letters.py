"""Deliveries a handler gave up on: list them and give them fresh attempts (audited)."""

from __future__ import annotations

from sqlalchemy import select

from core import audit
from core.admin.schemas import (
    DeadLetterOut,
    RedriveIn,
    RedriveOut,
)
from core.context import TenantContext
from core.errors import NotFound
from core.events import redrive_dead
from core.observability import get_logger
from core.outbox import deliveries_table, outbox_table
from core.pagination import Page, PageRequest
from core.presenting import from_row
from core.scoping import keyset_rows, map_page, one_or
from core.uow import UnitOfWork

log = get_logger("atlilith.admin")


async def list_dead_letters(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, handler: str | None = None
) -> Page[DeadLetterOut]:
    """Deliveries a handler gave up on after its attempts (a crash counts as one), most recent
    first, with the last error; re-drive them with [[admin.redrive_dead_letters]]."""
    await audit.require_platform_admin(ctx, uow, write=False)
    d, e = deliveries_table.c, outbox_table.c
    stmt = (
        select(d.event_id, e.name, d.handler, d.attempts, d.last_error, d.updated_at, e.created_at)
        .join_from(deliveries_table, outbox_table, e.id == d.event_id)
        .where(d.status == "dead")
    )
    if handler:
        stmt = stmt.where(d.handler == handler)
    rows = await keyset_rows(
        uow,
        stmt,
        page,
        d.updated_at,
        d.event_id,
        d.handler,
        descending=True,
        key=lambda r: (r.updated_at, r.event_id, r.handler),
        under=handler,
    )
    return map_page(
        rows,
        lambda r: from_row(
            DeadLetterOut, r, event_name=r.name, failed_at=r.updated_at, event_created_at=r.created_at
        ),
    )


async def redrive_dead_letters(ctx: TenantContext, uow: UnitOfWork, data: RedriveIn) -> RedriveOut:
    """Give a handler's dead deliveries (or one event's) fresh attempts: back to pending, the
    relays woken. Repeating it re-drives nothing more (`redriven: 0`). Audited when it changed
    something."""
    await audit.require_platform_admin(ctx, uow)
    if data.event_id is not None:
        delivery = select(deliveries_table.c.status).where(
            deliveries_table.c.event_id == data.event_id, deliveries_table.c.handler == data.handler
        )
        not_found = NotFound(
            f"no delivery of event {data.event_id} to handler {data.handler!r}",
            code="delivery_not_found",
            hint="list what is dead with [[admin.list_dead_letters]]",
        )
        await one_or(uow, delivery, not_found)
    ids = await redrive_dead(uow, data.handler, data.event_id)
    if ids:
        details = {"count": len(ids), "event_id": data.event_id, "reason": data.reason}
        await audit.record(uow, ctx, "deliveries.redrive", "handler", data.handler, details)
        log.info("dead_letters_redriven", handler=data.handler, count=len(ids), by=str(ctx.person_id))
    return RedriveOut(handler=data.handler, event_id=data.event_id, redriven=len(ids))
