"""Reading bookings: the filtered list and one booking."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, func, or_

from core.bookings.models import Booking
from core.bookings.policy import READ
from core.bookings.presenters import row_out
from core.bookings.queries import booking_query, load_booking_row, person_by_slug
from core.bookings.schemas import BookingFilters, BookingOut
from core.context import TenantContext
from core.pagination import Page, PageRequest
from core.scoping import keyset_rows, map_page, where_given
from core.uow import UnitOfWork


async def list_bookings(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, filters: BookingFilters | None = None
) -> Page[BookingOut]:
    """Bookings of this context by start time (earliest first), filtered."""
    ctx.require(READ)
    f = filters or BookingFilters()
    stmt = where_given(booking_query(ctx), (Booking.client_id, f.client_id))
    if f.from_at is not None:
        stmt = stmt.where(Booking.start_at >= f.from_at)
    if f.to_at is not None:
        stmt = stmt.where(Booking.start_at < f.to_at)
    if f.status:
        wanted = set(f.status)
        now = func.now()
        conditions: list[Any] = []
        stored = wanted - {"held", "expired"}
        if stored:
            conditions.append(Booking.status.in_(sorted(stored)))
        if "held" in wanted:
            conditions.append(and_(Booking.status == "held", Booking.hold_expires_at > now))
        if "expired" in wanted:
            conditions.append(
                or_(
                    Booking.status == "expired",
                    and_(Booking.status == "held", Booking.hold_expires_at <= now),
                )
            )
        stmt = stmt.where(or_(*conditions))
    if f.provider:
        stmt = stmt.where(Booking.provider_id == (await person_by_slug(uow, f.provider)))
    rows = await keyset_rows(uow, stmt, page, Booking.start_at, Booking.id, under=f)
    return map_page(rows, row_out)


async def get_booking(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> BookingOut:
    ctx.require(READ)
    return row_out(await load_booking_row(ctx, uow, booking_id))
