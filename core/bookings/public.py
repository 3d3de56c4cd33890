"""The booking page: what a visitor without an account may do with a provider's calendar.

They see who the provider (a person or an org) is and their active services, the free slots of
one service, and book a slot: a confirmed booking, or a request the provider confirms when the
service requires approval. Each operation runs in its own transaction acting as the page's
owner, with a context that holds the bookings scopes only — the same core operations every
other door calls (`find_slots`, `hold` + `confirm_booking`, `request_booking`), so notice,
advance, buffers and the no-double-booking constraint hold here exactly as everywhere else.

An unknown slug, a suspended person and an inactive or foreign service all answer the same
`NotFound`: the page reveals nothing about who exists. Nothing here shows client data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import Select, select

from core.bookings.holds import hold, request_booking
from core.bookings.lifecycle import confirm_booking
from core.bookings.models import Service
from core.bookings.policy import READ, WRITE
from core.bookings.presenters import money
from core.bookings.schemas import ConfirmIn, HoldIn, MoneyOut, RequestIn, SlotsOut, SlotsQuery
from core.bookings.schemas.common import BookableStart, LocationKind, TimeZone, bookable_range
from core.bookings.schemas.common import Text as Note
from core.bookings.slots import find_slots
from core.context import TenantContext, service_context
from core.errors import NotFound
from core.scoping import owned_by
from core.tenancy.models import Org, Person
from core.uow import Database, UnitOfWork
from core.validation import Email, Input, Name

__all__ = [
    "PublicBookIn",
    "PublicBookingOut",
    "PublicPage",
    "PublicService",
    "public_book",
    "public_is_free",
    "public_page",
    "public_service",
    "public_service_list",
    "public_slots",
]

# The longest stretch one slot page asks for: a week, as the page shows it.
MAX_DAYS = 14


class PublicService(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    duration_minutes: int
    price: MoneyOut | None
    location_kind: LocationKind
    approval_required: bool


class PublicPage(BaseModel):
    slug: str
    kind: Literal["person", "org"]
    name: str
    services: list[PublicService]


class PublicBookIn(Input):
    """What the visitor types: who they are and the slot they picked."""

    service_id: uuid.UUID
    start_at: BookableStart
    name: Name
    email: Email | None = None
    phone: str | None = Field(default=None, max_length=40)
    notes: Note | None = None  # kept as the booking's client note: the same bound
    # None when the visitor chose none (a form sent without script): the booking then has no
    # client zone, and its reminder falls back to the provider's rather than saying "UTC".
    time_zone: TimeZone | None = None

    @model_validator(mode="after")
    def _reachable(self) -> PublicBookIn:
        if not (self.email or self.phone):
            raise ValueError("give an email address or a phone number, so the provider can reach you")
        return self


class PublicBookingOut(BaseModel):
    id: uuid.UUID
    status: Literal["confirmed", "requested"]
    service: str
    provider: str
    start_at: dt.datetime
    end_at: dt.datetime
    time_zone: str | None
    manage_url: str
    manage_token: str


@dataclass(frozen=True)
class _Owner:
    slug: str
    kind: Literal["person", "org"]
    name: str
    person_id: uuid.UUID  # who the page acts as: the person, or the org's owner
    org_id: uuid.UUID | None


def _unknown() -> NotFound:
    return NotFound("no booking page here", code="page_not_found", hint="check the address")


async def _owner(uow: UnitOfWork, slug: str) -> _Owner | None:
    slug = slug.lower()
    org = (await uow.session.execute(select(Org).where(Org.slug == slug))).scalar_one_or_none()
    if org is not None:
        return _Owner(org.slug, "org", org.name, org.owner_id, org.id)
    person = (
        await uow.session.execute(
            select(Person).where(
                Person.slug == slug, Person.status == "active", Person.suspended_at.is_(None)
            )
        )
    ).scalar_one_or_none()
    if person is not None:
        return _Owner(person.slug, "person", person.display_name, person.id, None)
    return None


@asynccontextmanager
async def _as_page(db: Database, slug: str) -> AsyncIterator[tuple[_Owner, TenantContext, UnitOfWork]]:
    """A transaction narrowed to the page owner's tenant, acting with the bookings scopes only."""
    async with db.system() as uow:
        owner = await _owner(uow, slug)
        if owner is None:
            raise _unknown()
        await uow.act_as_service(owner.person_id, owner.org_id)
        ctx = service_context(
            owner.person_id,
            owner.org_id,
            frozenset({READ, WRITE}),
            uow.trace_id,
            person_slug=owner.slug if owner.kind == "person" else None,
            org_slug=owner.slug if owner.kind == "org" else None,
        )
        yield owner, ctx, uow


def _offered_query(tenant_id: uuid.UUID) -> Select[Service]:
    return select(Service).where(owned_by(Service, tenant_id), Service.active.is_(True))


async def _offered(ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID | None = None) -> list[Service]:
    stmt = _offered_query(ctx.tenant_id)
    if service_id is not None:
        stmt = stmt.where(Service.id == service_id)
    return list((await uow.session.execute(stmt.order_by(Service.name, Service.id))).scalars())


async def public_service_list(uow: UnitOfWork, stmt: Select[Service]) -> list[PublicService]:
    """The services a query selects, as a visitor sees them, by name."""
    return [
        _public(s) for s in (await uow.session.execute(stmt.order_by(Service.name, Service.id))).scalars()
    ]


def _public(s: Service) -> PublicService:
    return PublicService(
        id=s.id,
        name=s.name,
        description=s.description,
        duration_minutes=s.duration_minutes,
        price=money(s.price_amount, s.currency),
        location_kind=s.location_kind,
        approval_required=s.approval_required,
    )


async def public_page(db: Database, slug: str) -> PublicPage:
    """Who the page belongs to and what can be booked there."""
    async with _as_page(db, slug) as (owner, ctx, uow):
        services = await _offered(ctx, uow)
        return PublicPage(
            slug=owner.slug, kind=owner.kind, name=owner.name, services=[_public(s) for s in services]
        )


async def public_service(db: Database, slug: str, service_id: uuid.UUID) -> tuple[PublicPage, PublicService]:
    """The page and one of its services (NotFound for a service the page does not offer)."""
    async with _as_page(db, slug) as (owner, ctx, uow):
        found = await _offered(ctx, uow, service_id)
        if not found:
            raise _unknown()
        service = _public(found[0])
        return PublicPage(slug=owner.slug, kind=owner.kind, name=owner.name, services=[service]), service


async def public_slots(
    db: Database, slug: str, service_id: uuid.UUID, from_date: dt.date, days: int, time_zone: str
) -> SlotsOut:
    """The service's free slots for `days` days from `from_date`, in the visitor's zone."""
    days = max(1, min(days, MAX_DAYS))
    async with _as_page(db, slug) as (_, ctx, uow):
        if not await _offered(ctx, uow, service_id):
            raise _unknown()
        # Nothing past the last bookable day can be booked; stopping there also keeps a far
        # `from_date` (9999-12-31) from overflowing the sum: the query refuses it like any door's.
        _, last = bookable_range()
        to_date = from_date if from_date >= last else min(last, from_date + dt.timedelta(days=days - 1))
        query = SlotsQuery(service_id=service_id, from_date=from_date, to_date=to_date, time_zone=time_zone)
        return await find_slots(ctx, uow, query)


async def public_is_free(db: Database, slug: str, service_id: uuid.UUID, start: dt.datetime) -> bool:
    """Whether `start` is one of the service's free times now, as its times page offers them
    (a form is only worth filling in for one; the booking itself still decides)."""
    day = start.astimezone(dt.UTC).date()
    found = await public_slots(db, slug, service_id, day, 1, "UTC")
    return any(slot.start == start for slot in found.slots)


async def public_book(
    db: Database, slug: str, data: PublicBookIn, idempotency_key: str | None = None
) -> PublicBookingOut:
    """Book the slot for the visitor: confirmed at once, or a request when the service requires
    approval. A slot taken meanwhile raises 409 `slot_taken` (the exclusion constraint decides)."""
    async with _as_page(db, slug) as (_, ctx, uow):
        found = await _offered(ctx, uow, data.service_id)
        if not found:
            raise _unknown()
        who = {
            "client_name": data.name,
            "client_email": str(data.email) if data.email else None,
            "client_phone": data.phone,
            "client_note": data.notes,
        }
        # The zone goes with the slot on both paths: a request is never confirmed by the
        # visitor, so it must keep the zone they picked from the start.
        slot = {"service_id": data.service_id, "start_at": data.start_at, "time_zone": data.time_zone}
        if found[0].approval_required:
            asked = RequestIn(**slot, **who)
            booking = await request_booking(ctx, uow, asked, idempotency_key, offered_only=True)
        else:
            key = idempotency_key and f"{idempotency_key}:hold"
            held = await hold(ctx, uow, HoldIn(**slot, **who), key, offered_only=True)
            booking = await confirm_booking(
                ctx,
                uow,
                held.id,
                ConfirmIn(time_zone=data.time_zone),
                idempotency_key and f"{idempotency_key}:confirm",
            )
        assert booking.manage is not None  # requests and confirmations always carry the link
        return PublicBookingOut(
            id=booking.id,
            status="requested" if booking.status == "requested" else "confirmed",
            service=booking.service.name,
            provider=booking.provider.display_name,
            start_at=booking.start_at,
            end_at=booking.end_at,
            time_zone=data.time_zone,
            manage_url=booking.manage.url,
            manage_token=booking.manage.token,
        )
