"""Creating bookings: a short hold while details are collected, or a request the provider answers."""

from __future__ import annotations

import datetime as dt
import uuid
from collections import namedtuple
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.types import Uuid

from core.bookings.availability import Rules, fits
from core.bookings.models import Booking
from core.bookings.policy import (
    SLOTS_HINT,
    WRITE,
    client_required,
    pick_providers,
    require_active,
    rules_for,
    unavailable,
)
from core.bookings.presenters import booking_out, event_row, iso, manage_link_out
from core.bookings.queries import Offer, Provider, Terms, load_offer, resolve_client
from core.bookings.schemas import BookingOut, ClientRef, HoldIn, RequestIn, ServiceRef
from core.bookings.schemas.booking import _SlotFields
from core.context import TenantContext
from core.db import DriverStatement
from core.errors import Conflict
from core.idempotency import idempotent_operation
from core.outbox import EVENT_COLUMNS, outbox_table
from core.uow import UnitOfWork
from core.utilities import utcnow


def _fitting(
    offer: Offer, slug: str | None, rules: Rules, start: dt.datetime, offered_only: bool
) -> list[Provider]:
    """The providers the booking may go to whose hours and the service's notice allow this start."""
    candidates = pick_providers(offer.service, offer.providers, slug)
    hours = offer.hours_of([p.id for p in candidates])
    reasons = {
        p.id: fits(h, rules, start, offered_only=offered_only) if (h := hours.get(p.id)) else "no_hours"
        for p in candidates
    }
    candidates = [p for p in candidates if reasons[p.id] is None]
    if not candidates:
        raise unavailable(next(r for r in reasons.values() if r))
    return candidates


# The booking in ONE statement, under the providers' locks (taken by `load_offer`):
# expire the candidates' stale holds in the way (the `expired` InitPlan runs before any row is
# inserted), take the first candidate in round-robin order who is free then (with one candidate,
# the exclusion constraint alone decides: its violation is the `slot_taken` 409), insert the
# booking, count the provider's turn and write the booking's event to the outbox beside it (only
# beside an inserted booking; the event names the provider chosen here, the rest of it is
# `presenters._event`'s, bound as `core.outbox.EVENT_CTE` binds an event). It runs on the
# driver (`DriverStatement`); the booking's columns come back in the table's order, read by name
# as a `PlacedBooking` (`blocked` as the driver's range: no answer reads it).
_BOOKING_COLUMNS = tuple(Booking.__table__.columns)
PlacedBooking = namedtuple("PlacedBooking", [c.name for c in _BOOKING_COLUMNS])  # type: ignore[misc]
_PLACE = DriverStatement.of(
    text(
        """
WITH candidate AS (
  SELECT c.p, c.turn FROM unnest(CAST(:ps AS uuid[])) WITH ORDINALITY AS c(p, turn)
), expired AS (
  SELECT bookings.expire_stale_holds(c.p, :blocked_from, :blocked_until) AS n FROM candidate c
), chosen AS (
  SELECT c.p FROM candidate c
   WHERE (SELECT count(*) FROM expired) >= 0
     AND (CAST(:single AS boolean)
          OR NOT EXISTS (SELECT 1 FROM bookings.provider_busy(c.p, :blocked_from, :blocked_until)))
   ORDER BY c.turn LIMIT 1
), made AS (
  INSERT INTO bookings.bookings (id, service_id, provider_id, client_id, status, start_at, end_at,
         buffer_before_minutes, buffer_after_minutes, hold_expires_at, client_time_zone,
         price_amount, currency, location_kind, location, notes, client_note, person_id, org_id)
  SELECT :id, :service_id, chosen.p, :client_id, :status, :start_at, :end_at, :buffer_before,
         :buffer_after, :hold_expires_at, :client_time_zone, :price_amount, :currency,
         :location_kind, :location, :notes, :client_note, :person_id, :org_id
    FROM chosen
  RETURNING """
        + ", ".join(c.name for c in _BOOKING_COLUMNS)
        + """
), turn AS (
  UPDATE bookings.service_providers sp
     SET last_assigned_at = now(), assigned_count = sp.assigned_count + 1
    FROM made WHERE sp.service_id = made.service_id AND sp.provider_id = made.provider_id
), event AS (
  INSERT INTO platform.outbox (id, name, data, person_id, org_id, trace_id, traceparent)
  SELECT :outbox_id, :outbox_name,
         jsonb_set(:outbox_data, '{provider_id}', to_jsonb(CAST(made.provider_id AS text))),
         :outbox_person_id, :outbox_org_id, :outbox_trace_id, :outbox_traceparent
    FROM made
)
SELECT * FROM made
"""
    )
    .bindparams(
        bindparam("client_id", type_=Uuid()),
        bindparam("org_id", type_=Uuid()),
        bindparam("hold_expires_at", type_=DateTime(timezone=True)),
        *(bindparam(f"outbox_{c}", type_=outbox_table.c[c].type) for c in EVENT_COLUMNS),
    )
    .columns(*_BOOKING_COLUMNS)
)


@dataclass(frozen=True)
class _Planned:
    """The booking about to be written, as its event describes it (`presenters.BookingFacts`):
    known before the statement runs, except the provider when several may take it."""

    id: uuid.UUID
    service_id: uuid.UUID
    provider_id: uuid.UUID
    client_id: uuid.UUID | None
    status: str
    person_id: uuid.UUID
    org_id: uuid.UUID | None
    start_at: dt.datetime
    end_at: dt.datetime
    price_amount: Decimal | None
    currency: str | None


async def _place(
    ctx: TenantContext,
    uow: UnitOfWork,
    data: _SlotFields,
    service: Terms,
    candidates: list[Provider],
    client: ClientRef | None,
    status: str,
    span: tuple[dt.datetime, dt.datetime],
    blocked: tuple[dt.datetime, dt.datetime],
    hold_expires_at: dt.datetime | None,
) -> Any:
    """The booking row (a `PlacedBooking`) on the service's current terms, with the provider it
    went to, and its event: on the driver's connection (`fetch`), so a hold makes no session."""
    planned = _Planned(
        id=uuid.uuid4(),
        service_id=service.id,
        provider_id=candidates[0].id,  # the statement names the one it chose
        client_id=client.id if client else None,
        status=status,
        person_id=ctx.person_id,
        org_id=ctx.org_id,
        start_at=span[0],
        end_at=span[1],
        price_amount=service.price_amount,
        currency=service.currency,
    )
    extra = {"hold_expires_at": iso(hold_expires_at)} if hold_expires_at else {}
    # Events queued before this one are written first, as the commit would have: the outbox's
    # order is the order of emission.
    await uow.flush_events()
    event = event_row(uow, status, planned, **extra)
    values = {
        "ps": [p.id for p in candidates],
        "single": len(candidates) == 1,
        "blocked_from": blocked[0],
        "blocked_until": blocked[1],
        "id": planned.id,
        "service_id": planned.service_id,
        "client_id": planned.client_id,
        "status": status,
        "start_at": span[0],
        "end_at": span[1],
        "buffer_before": service.buffer_before_minutes,
        "buffer_after": service.buffer_after_minutes,
        "hold_expires_at": hold_expires_at,
        "client_time_zone": data.time_zone,
        "price_amount": planned.price_amount,
        "currency": planned.currency,
        "location_kind": service.location_kind,
        "location": service.location,
        "notes": data.notes,
        "client_note": data.client_note,
        "person_id": planned.person_id,
        "org_id": planned.org_id,
    } | {f"outbox_{c}": event[c] for c in EVENT_COLUMNS}
    rows = await uow.fetch(_PLACE.sql, *_PLACE.args(values))
    if not rows:
        raise Conflict("every provider of this service is busy then", code="slot_taken", hint=SLOTS_HINT)
    return PlacedBooking(*rows[0])


async def _create(
    ctx: TenantContext, uow: UnitOfWork, data: _SlotFields, status: str, ttl: int | None, offered_only: bool
) -> BookingOut:
    ctx.require(WRITE)
    offer = await load_offer(ctx, uow, data.service_id, data.provider, lock=True)
    service = offer.service
    require_active(service)
    now = utcnow()
    rules = rules_for(service, now)
    start = data.start_at.astimezone(dt.UTC)
    end = start + rules.duration
    candidates = _fitting(offer, data.provider, rules, start, offered_only)
    client = await resolve_client(ctx, uow, data)
    if status == "requested" and client is None:
        raise client_required()
    ttl_seconds = ttl or uow.db.settings.bookings_hold_ttl_seconds
    expires = now + dt.timedelta(seconds=ttl_seconds) if status == "held" else None
    blocked = (start - rules.buffer_before, end + rules.buffer_after)
    booking = await _place(
        ctx, uow, data, service, candidates, client, status, (start, end), blocked, expires
    )
    provider = next(p for p in candidates if p.id == booking.provider_id)
    return booking_out(
        booking,
        ServiceRef(id=service.id, name=service.name, duration_minutes=service.duration_minutes),
        provider.ref,
        client,
        manage_link_out(uow, booking) if status == "requested" else None,
    )


@idempotent_operation("bookings.hold")
async def hold(
    ctx: TenantContext,
    uow: UnitOfWork,
    data: HoldIn,
    idempotency_key: str | None = None,
    offered_only: bool = False,
) -> BookingOut:
    """Reserve a slot for a short time (default 5 minutes) while the details are collected;
    confirm it to book. An expired hold blocks nothing. `offered_only`: only at a start a slot
    search offers (a client booking; a provider may place one anywhere in the hours)."""
    return await _create(ctx, uow, data, "held", data.ttl_seconds, offered_only)


@idempotent_operation("bookings.request")
async def request_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    data: RequestIn,
    idempotency_key: str | None = None,
    offered_only: bool = False,
) -> BookingOut:
    """Ask for a slot on the client's behalf; it stays blocked until the provider confirms or
    declines (`offered_only` as for `hold`)."""
    return await _create(ctx, uow, data, "requested", None, offered_only)
