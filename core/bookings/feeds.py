"""Calendar exports: one booking as .ics, and private calendar feeds of a provider's bookings."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from sqlalchemy import and_, func, insert, or_, select

from core.bookings import calendar
from core.bookings.models import Booking, CalendarFeed, Service
from core.bookings.policy import READ
from core.bookings.presenters import calendar_entry
from core.bookings.queries import load_booking_row
from core.bookings.schemas import Calendar as CalendarOut
from core.bookings.schemas import FeedCreated, FeedIn, FeedOut
from core.context import TenantContext
from core.errors import NotFound
from core.pagination import Page, PageRequest
from core.scoping import keyset_page, map_page, one_or
from core.tenancy.models import Client, OrgMember, Person
from core.uow import Database, UnitOfWork
from core.utilities import sha256_hex, utcnow

FEED_PREFIX = "atf_"


async def booking_ics(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> CalendarOut:
    """The booking as an iCalendar (.ics) document."""
    ctx.require(READ)
    row = await load_booking_row(ctx, uow, booking_id)
    b, service_name, _, _, _, client = row
    content = calendar.document(
        [calendar_entry(b, service_name, client.name if client else None, False)], service_name
    )
    return CalendarOut(filename=f"booking-{b.id}.ics", content=content)


def _feed_url(db: Database, token: str) -> str:
    return f"{db.settings.base_url}/v1/bookings/feeds/{token}.ics"


async def create_feed(ctx: TenantContext, uow: UnitOfWork, data: FeedIn) -> FeedCreated:
    """A private calendar feed of your bookings as a provider, in every context you work in.
    The URL is shown once; anyone holding it can read the feed until you revoke it."""
    ctx.require(READ)
    token = FEED_PREFIX + secrets.token_urlsafe(32)
    feed = (
        await uow.session.execute(
            insert(CalendarFeed)
            .values(id=uuid.uuid4(), person_id=ctx.person_id, name=data.name, token_hash=sha256_hex(token))
            .returning(CalendarFeed)
        )
    ).scalar_one()
    uow.emit("bookings/feed.created", {"feed_id": feed.id})
    return FeedCreated(
        **FeedOut.model_validate(feed, from_attributes=True).model_dump(), url=_feed_url(uow.db, token)
    )


async def list_feeds(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[FeedOut]:
    ctx.require(READ)
    # Feeds belong to the person, not the context: one feed covers every context they work in.
    stmt = select(CalendarFeed).where(CalendarFeed.person_id == ctx.person_id)
    rows = await keyset_page(uow, stmt, page, CalendarFeed.created_at, CalendarFeed.id)
    return map_page(rows, lambda f: FeedOut.model_validate(f, from_attributes=True))


async def revoke_feed(ctx: TenantContext, uow: UnitOfWork, feed_id: uuid.UUID) -> FeedOut:
    """Revoke a feed: its URL answers 404 from now on. Revoking twice changes nothing."""
    ctx.require(READ)
    feed = await one_or(
        uow,
        select(CalendarFeed).where(CalendarFeed.id == feed_id, CalendarFeed.person_id == ctx.person_id),
        NotFound("no such feed", code="feed_not_found", hint="list your feeds: [[bookings.list_feeds]]"),
    )
    if feed.revoked_at is None:
        feed.revoked_at = utcnow()
        await uow.session.flush()
        uow.emit("bookings/feed.revoked", {"feed_id": feed.id})
    return FeedOut.model_validate(feed, from_attributes=True)


async def feed_ics(db: Database, token: str) -> CalendarOut:
    """The feed behind a token: the provider's bookings in their personal context and in the orgs
    they still belong to, from 30 days back. Unknown or revoked tokens are 404."""
    missing = NotFound("no such calendar feed", code="feed_not_found", hint="the feed may have been revoked")
    if not token.startswith(FEED_PREFIX) or len(token) > 100:
        raise missing
    async with db.system() as uow:
        feed = (
            await uow.session.execute(
                select(CalendarFeed).where(
                    CalendarFeed.token_hash == sha256_hex(token), CalendarFeed.revoked_at.is_(None)
                )
            )
        ).scalar_one_or_none()
        if feed is None:
            raise missing
        person = feed.person_id
        # A feed URL is one of the person's credentials: a suspended person's feeds go dark too.
        status = (await uow.session.execute(select(Person.status).where(Person.id == person))).scalar_one()
        if status != "active":
            raise missing
        if feed.last_used_at is None or feed.last_used_at < utcnow() - dt.timedelta(minutes=5):
            feed.last_used_at = utcnow()
        member_of = select(OrgMember.org_id).where(OrgMember.person_id == person)
        rows = (
            await uow.session.execute(
                select(Booking, Service.name, Client.name)
                .join(Service, Service.id == Booking.service_id)
                .outerjoin(Client, Client.id == Booking.client_id)
                .where(
                    Booking.provider_id == person,
                    or_(
                        and_(Booking.org_id.is_(None), Booking.person_id == person),
                        Booking.org_id.in_(member_of),
                    ),
                    Booking.status.in_(("confirmed", "requested", "cancelled", "completed")),
                    Booking.start_at >= func.now() - dt.timedelta(days=30),
                )
                .order_by(Booking.start_at, Booking.id)
                .limit(5000)
            )
        ).all()
        content = calendar.document(
            [calendar_entry(b, service_name, client_name, False) for b, service_name, client_name in rows],
            feed.name,
        )
    return CalendarOut(filename="bookings.ics", content=content)
