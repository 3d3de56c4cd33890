"""Bookings loaders shared by the operations: services, providers, working hours, busy time,
clients and booking rows, and the per-provider write lock."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from functools import lru_cache
from typing import Any, Protocol
from typing import cast as cast_type
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    BindParameter,
    ColumnElement,
    DateTime,
    Row,
    Select,
    Text,
    TextClause,
    and_,
    bindparam,
    case,
    cast,
    extract,
    func,
    literal,
    null,
    select,
    text,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.types import NullType, Uuid

from core.bookings.availability import Busy, Hours
from core.bookings.models import Booking, Schedule, Service, ServiceProvider
from core.bookings.schemas import ClientRef, DateOverride, WeeklyHours
from core.bookings.schemas.booking import _ClientFields
from core.context import TenantContext
from core.db import DriverStatement
from core.errors import FieldIssue, NotFound, ValidationFailed
from core.scoping import get_in_context, in_context, not_in_context, owned_by, row_or
from core.tenancy.matching import find_or_create_client
from core.tenancy.models import Client, OrgMember, Person
from core.tenancy.schemas import PersonRef
from core.uow import UnitOfWork

# An id as a value, or as a parameter bound when a cached statement runs.
_Id = uuid.UUID | BindParameter[uuid.UUID]


@dataclass(frozen=True)
class Provider:
    id: uuid.UUID
    slug: str
    display_name: str

    @property
    def ref(self) -> PersonRef:
        return PersonRef(id=self.id, slug=self.slug, display_name=self.display_name)


def _locks_sql(count: int) -> TextClause:
    # Sorted, so two writers that need the same providers take their locks in the same order.
    if count == 1:
        return text("SELECT pg_advisory_xact_lock(hashtextextended('bookings:provider:' || :p, 0))")
    return text(
        "SELECT pg_advisory_xact_lock(hashtextextended('bookings:provider:' || p::text, 0))"
        " FROM (SELECT p FROM unnest(CAST(:ps AS uuid[])) AS u(p) ORDER BY p) AS s"
    )


async def lock_providers(uow: UnitOfWork, provider_ids: Sequence[uuid.UUID]) -> None:
    """Writers for one provider take turns (whatever context they act in): no two of them race
    into the exclusion constraint, where concurrent conflicting inserts can deadlock. The
    constraint still holds for any writer that skips this."""
    ids = sorted(set(provider_ids))
    if len(ids) == 1:
        await uow.session.execute(_locks_sql(1), {"p": str(ids[0])})
    else:
        await uow.session.execute(_locks_sql(len(ids)), {"ps": ids})


class Terms(Protocol):
    """What the booking rules read of a service: a `Service`, or the terms an offer read as
    columns (`OfferedService`)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def name(self) -> str: ...
    @property
    def duration_minutes(self) -> int: ...
    @property
    def buffer_before_minutes(self) -> int: ...
    @property
    def buffer_after_minutes(self) -> int: ...
    @property
    def min_notice_minutes(self) -> int: ...
    @property
    def max_advance_days(self) -> int: ...
    @property
    def slot_interval_minutes(self) -> int | None: ...
    @property
    def price_amount(self) -> Decimal | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def location_kind(self) -> str: ...
    @property
    def location(self) -> str | None: ...
    @property
    def assignment(self) -> str: ...
    @property
    def active(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class OfferedService:
    """A service's terms as the offer statement reads them: plain columns, no ORM object to
    build, track in the session and flush-check at commit on every hold and slot search."""

    id: uuid.UUID
    name: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    min_notice_minutes: int
    max_advance_days: int
    slot_interval_minutes: int | None
    price_amount: Decimal | None
    currency: str | None
    location_kind: str
    location: str | None
    assignment: str
    active: bool


_TERMS = tuple(Service.__table__.c[f.name] for f in fields(OfferedService))


def _terms_of(service: Service) -> OfferedService:
    return OfferedService(*(getattr(service, f.name) for f in fields(OfferedService)))


@dataclass(frozen=True)
class Offer:
    """A service as a booking attempt or a slot search sees it: its terms, who delivers it now
    (round-robin order: least recently assigned first), their working hours in this context and,
    when asked for, their busy time (every context) around the window searched."""

    service: OfferedService
    providers: list[Provider]
    # Each provider's schedule as stored: (time zone, weekly rules, date overrides), the rules
    # as JSON text; None without one.
    schedules: dict[uuid.UUID, tuple[str, str, str] | None]
    busy: dict[uuid.UUID, Busy]

    def hours_of(self, provider_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Hours | None]:
        """Working hours for these providers only (a hold for one provider of many reads one
        schedule)."""
        return {p: _stored_hours(*s) if (s := self.schedules.get(p)) else None for p in provider_ids}


def _provider_lock(wanted: ColumnElement[bool]) -> ColumnElement[str | None]:
    # The same key as `lock_providers`; void cast to text so the column has a readable type.
    key = func.hashtextextended(literal("bookings:provider:") + cast(Person.id, Text), 0)
    return case((wanted, cast(func.pg_advisory_xact_lock(key), Text)))


def _busy_column() -> ColumnElement[Any]:
    """The provider's busy ranges around the window searched (`offer_from`, `offer_to`), widened
    by the service's buffers and length (a slot starting at the window's end still needs its
    time), as an n x 2 array of microseconds."""
    before = func.make_interval(0, 0, 0, 0, 0, Service.buffer_before_minutes)
    after = func.make_interval(0, 0, 0, 0, 0, Service.duration_minutes + Service.buffer_after_minutes)
    window = [bindparam(f"offer_{end}", type_=DateTime(timezone=True)) for end in ("from", "to")]
    busy = func.bookings.provider_busy(Person.id, window[0] - before, window[1] + after).table_valued(
        "blocked_from", "blocked_until"
    )
    pairs = func.array_agg(array([_micros(busy.c.blocked_from), _micros(busy.c.blocked_until)]))
    # Untyped on purpose: asyncpg already hands back nested lists of ints, and an ARRAY type
    # would walk every element through SQLAlchemy's item processing again.
    return type_coerce(select(pairs).scalar_subquery(), NullType())


def _micros(instant: ColumnElement[Any]) -> ColumnElement[int]:
    # Microseconds since the epoch, exactly (EXTRACT gives numeric): the slot grid's unit.
    return cast(extract("epoch", instant) * 1_000_000, BigInteger)


# The offer statement's values are bound at execution, so the statement is built once per shape;
# the tenant filter is still `owned_by`'s, given a parameter where it usually gets the id.
_TENANT = cast_type(uuid.UUID, bindparam("offer_tenant", type_=Uuid()))


@lru_cache(maxsize=16)
def _offer_statement(*, lock: bool, by_slug: bool, personal: bool, busy: bool) -> DriverStatement:
    """The offer statement of one shape, built and compiled once: building it (a select of the
    service's terms and its providers, three joins, the lock and busy columns) cost more than a
    millisecond per hold or slot search. Columns: the provider's id, slug, name and last turn,
    the schedule, the lock, the busy time (0-8), then the service's terms (`_TERMS`)."""
    wanted = Person.slug == bindparam("offer_slug") if by_slug else true()
    person, org = bindparam("offer_person", type_=Uuid()), bindparam("offer_org", type_=Uuid())
    stmt = (
        select(Person.id, Person.slug, Person.display_name, ServiceProvider.last_assigned_at)
        # The schedule's rules as text: no JSON decoded nor ORM object made for a provider
        # whose hours are not needed, and the text is the parsed hours' cache key.
        .add_columns(Schedule.time_zone, cast(Schedule.weekly, Text), cast(Schedule.overrides, Text))
        .add_columns(_provider_lock(wanted) if lock else null(), _busy_column() if busy else null())
        .add_columns(*_TERMS)
        .select_from(Service)
        .join(
            ServiceProvider,
            and_(ServiceProvider.service_id == Service.id, owned_by(ServiceProvider, _TENANT)),
        )
        .join(Person, and_(Person.id == ServiceProvider.provider_id, _members(personal, person, org)))
        .outerjoin(Schedule, and_(Schedule.provider_id == Person.id, owned_by(Schedule, _TENANT)))
        .where(Service.id == bindparam("offer_service", type_=Uuid()), owned_by(Service, _TENANT))
        .order_by(Person.id)
    )
    return DriverStatement.of(stmt)


async def load_offer(
    ctx: TenantContext,
    uow: UnitOfWork,
    service_id: uuid.UUID,
    slug: str | None = None,
    *,
    lock: bool = False,
    busy_window: tuple[dt.datetime, dt.datetime] | None = None,
) -> Offer:
    """The offer in ONE statement. `lock`: take the write locks (`lock_providers`) of the
    providers the booking may go to (`slug`, or all) in provider order -- PostgreSQL evaluates
    volatile output columns after the sort, so every writer takes them in the same order, and
    the next statement reads under them. `busy_window`: add each provider's busy time there."""
    stmt = _offer_statement(
        lock=lock, by_slug=bool(slug), personal=ctx.org_id is None, busy=busy_window is not None
    )
    values: dict[str, Any] = {
        "offer_tenant": ctx.tenant_id,
        "offer_service": service_id,
        "offer_person": ctx.person_id,
        "offer_org": ctx.org_id,
    }
    if slug:
        values["offer_slug"] = slug.lower()
    if busy_window is not None:
        values["offer_from"], values["offer_to"] = busy_window
    # Records on the driver's connection, in the unit's transaction: no ORM, no execution context.
    rows: Sequence[Sequence[Any]] = await uow.fetch(stmt.sql, *stmt.args(values))
    if not rows:
        # Unknown service (404) or nobody delivers it: the failure path may take a second look.
        return Offer(_terms_of(await load_service(ctx, uow, service_id)), [], {}, {})
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
    turns = sorted(rows, key=lambda r: (r[3] is not None, r[3] or epoch, r[0]))
    return Offer(
        service=OfferedService(*rows[0][9:]),
        providers=[Provider(r[0], r[1], r[2]) for r in turns],
        schedules={r[0]: (r[4], r[5], r[6]) if r[4] is not None else None for r in rows},
        busy={r[0]: Busy.of_micros(r[8] or ()) for r in rows} if busy_window is not None else {},
    )


async def expire_stale_holds(
    uow: UnitOfWork, provider_ids: Sequence[uuid.UUID], start: dt.datetime, end: dt.datetime
) -> None:
    await uow.session.execute(
        text("SELECT bookings.expire_stale_holds(p, :f, :t) FROM unnest(CAST(:ps AS uuid[])) AS u(p)"),
        {"ps": list(provider_ids), "f": start, "t": end},
    )


async def busy_ranges(
    uow: UnitOfWork,
    provider_ids: Sequence[uuid.UUID],
    start: dt.datetime,
    end: dt.datetime,
    except_booking: uuid.UUID | None = None,
) -> dict[uuid.UUID, Busy]:
    """Each provider's busy time in every context they work in, as bare ranges."""
    rows = (
        await uow.session.execute(
            text(
                "SELECT u.p, b.blocked_from, b.blocked_until FROM unnest(CAST(:ps AS uuid[])) AS u(p)"
                " CROSS JOIN LATERAL bookings.provider_busy(u.p, :f, :t, :x) AS b"
            ).bindparams(bindparam("x", type_=Uuid())),
            {"ps": list(provider_ids), "f": start, "t": end, "x": except_booking},
        )
    ).all()
    ranges: dict[uuid.UUID, list[tuple[dt.datetime, dt.datetime]]] = {p: [] for p in provider_ids}
    for provider_id, a, b in rows:
        ranges.setdefault(provider_id, []).append((a, b))
    return {p: Busy(r) for p, r in ranges.items()}


async def load_service(
    ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID, *, lock: bool = False
) -> Service:
    not_found = not_in_context("service", "list services with [[bookings.list_services]]")
    return await get_in_context(uow, Service, ctx, service_id, lock=lock, not_found=not_found)


def _live_member(ctx: TenantContext) -> ColumnElement[bool]:
    """Persons who may provide in this context now: the person (personal), or current members."""
    return _members(ctx.org_id is None, ctx.person_id, ctx.org_id)


def _members(personal: bool, person: _Id, org: _Id | None) -> ColumnElement[bool]:
    if personal:
        return Person.id == person
    return Person.id.in_(select(OrgMember.person_id).where(OrgMember.org_id == org))


async def eligible_providers(
    ctx: TenantContext, uow: UnitOfWork, service_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[Provider]]:
    """Who delivers each service now, in round-robin order: least recently assigned first."""
    rows = (
        await uow.session.execute(
            select(ServiceProvider.service_id, Person.id, Person.slug, Person.display_name)
            .join(Person, Person.id == ServiceProvider.provider_id)
            .where(
                ServiceProvider.service_id.in_(service_ids),
                in_context(ServiceProvider, ctx),
                _live_member(ctx),
            )
            .order_by(
                ServiceProvider.service_id,
                ServiceProvider.last_assigned_at.asc().nulls_first(),
                ServiceProvider.provider_id,
            )
        )
    ).all()
    found: dict[uuid.UUID, list[Provider]] = {s: [] for s in service_ids}
    for service_id, pid, slug, name in rows:
        found[service_id].append(Provider(pid, slug, name))
    return found


async def person_by_slug(uow: UnitOfWork, slug: str) -> uuid.UUID | None:
    found = (
        await uow.session.execute(text("SELECT platform.person_id_by_slug(:s)"), {"s": slug})
    ).scalar_one_or_none()
    return uuid.UUID(str(found)) if found else None


async def find_provider(ctx: TenantContext, uow: UnitOfWork, slug: str | None) -> Provider:
    """A provider of this context by slug (None = yourself): you, or a current member of the org."""
    stmt = select(Person.id, Person.slug, Person.display_name).where(_live_member(ctx))
    stmt = stmt.where(Person.slug == slug.lower()) if slug else stmt.where(Person.id == ctx.person_id)
    not_found = NotFound(
        f"{slug!r} is not a provider in this context" if slug else "you are not a provider here",
        code="provider_not_found",
        hint="in an org, providers are its members ([[tenancy.list_members]]); in your personal "
        "context, only you",
    )
    row = await row_or(uow, stmt, not_found)
    return Provider(row.id, row.slug, row.display_name)


def _hours_of(schedule: Schedule | None) -> Hours | None:
    if schedule is None:
        return None
    return _hours(schedule.time_zone, schedule.weekly, schedule.overrides)


def _hours(zone: str, weekly: list[dict[str, Any]], overrides: list[dict[str, Any]]) -> Hours:
    return Hours(
        zone=ZoneInfo(zone),
        weekly=tuple(WeeklyHours.model_validate(w) for w in weekly),
        overrides=tuple(DateOverride.model_validate(o) for o in overrides),
    )


@lru_cache(maxsize=1024)
def _stored_hours(zone: str, weekly: str, overrides: str) -> Hours:
    """Hours from a schedule's stored text, parsed once per distinct schedule: a provider's
    hours are the same on every hold and slot search until they are changed, which changes the
    key. `Hours` is immutable, so one instance serves every request."""
    return _hours(zone, json.loads(weekly), json.loads(overrides))


async def hours_of_providers(
    ctx: TenantContext, uow: UnitOfWork, provider_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Hours | None]:
    rows = (
        await uow.session.execute(
            select(Schedule).where(in_context(Schedule, ctx), Schedule.provider_id.in_(provider_ids))
        )
    ).scalars()
    found: dict[uuid.UUID, Hours | None] = dict.fromkeys(provider_ids)
    for schedule in rows:
        found[schedule.provider_id] = _hours_of(schedule)
    return found


async def resolve_client(ctx: TenantContext, uow: UnitOfWork, data: _ClientFields) -> ClientRef | None:
    """The booking's client: an existing one by id, or found/created from contact details."""
    if data.client_id is not None:
        not_found = not_in_context(
            "client", "list clients ([[tenancy.list_clients]]), or give the client's email or phone instead"
        )
        client = await get_in_context(uow, Client, ctx, data.client_id, not_found=not_found)
        return ClientRef(id=client.id, name=client.name, email=client.email, phone=client.phone)
    if data.client_email or data.client_phone:
        found, _ = await find_or_create_client(
            ctx, uow, name=data.client_name, email=data.client_email, phone=data.client_phone
        )
        return ClientRef(id=found.id, name=found.name, email=found.email, phone=found.phone)
    if data.client_name:
        raise ValidationFailed(
            "a client needs an email or a phone number",
            code="contact_required",
            hint="add the client's email or phone number, or choose an existing client",
            errors=[FieldIssue("client_email", "email or phone required")],
        )
    return None


# A booking with what its presentation needs: service name and duration, provider slug and
# display name (NULL once the provider's account is gone), and the client (if any).
BookingSelect = Select[Booking, str, int, str, str, Client]
BookingRow = Row[Booking, str, int, str, str, Client]


def booking_query(ctx: TenantContext) -> BookingSelect:
    return (
        select(Booking, Service.name, Service.duration_minutes, Person.slug, Person.display_name, Client)
        .join(Service, Service.id == Booking.service_id)
        .outerjoin(Person, Person.id == Booking.provider_id)
        .outerjoin(Client, Client.id == Booking.client_id)
        .where(in_context(Booking, ctx))
    )


async def load_booking_row(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, *, lock: bool = False
) -> BookingRow:
    # populate_existing: a row read again after an UPDATE shows the new values.
    stmt = booking_query(ctx).where(Booking.id == booking_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update(of=Booking)
    return await row_or(uow, stmt, not_in_context("booking", "list bookings with [[bookings.list_bookings]]"))


async def apply_changes(uow: UnitOfWork, booking_id: uuid.UUID, **values: Any) -> None:
    await uow.session.execute(
        update(Booking)
        .where(Booking.id == booking_id)
        .values(**values, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )
