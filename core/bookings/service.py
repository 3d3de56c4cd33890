"""Bookings: services, working hours, slots, and the booking lifecycle.

Every rule lives here once; REST routes and MCP tools call these functions. The one rule that
cannot be left to code is "a provider is never booked twice at once": PostgreSQL enforces it
with the exclusion constraint `ex_bookings_no_overlap` over (provider, buffered time) for every
active booking, across all the contexts the provider works in. The code around it only makes
the outcome clear (409 `slot_taken`) and cheap (writes for one provider queue on an advisory
lock instead of racing into the constraint, which can deadlock under concurrent inserts).
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Text,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.types import Uuid

from core.auth import sha256_hex, utcnow
from core.bookings import calendar, links
from core.bookings.availability import Busy, Hours, Rules, fits, slot_starts
from core.bookings.models import (
    ACTIVE_STATES,
    NO_OVERLAP,
    Booking,
    CalendarFeed,
    Schedule,
    Service,
    ServiceProvider,
)
from core.bookings.schemas import (
    AvailabilityIn,
    AvailabilityOut,
    BookingChangeOut,
    BookingFilters,
    BookingOut,
    CancelIn,
    CancellationOut,
    ClientRef,
    ConfirmIn,
    DateOverride,
    DeclineIn,
    FeedCreated,
    FeedIn,
    FeedOut,
    HoldIn,
    ManageCancelIn,
    ManagedBookingOut,
    ManagedChangeOut,
    ManageLinkOut,
    ManageRescheduleIn,
    MoneyOut,
    OutcomeIn,
    RequestIn,
    RescheduleIn,
    RescheduleOut,
    ServiceIn,
    ServiceOut,
    ServiceRef,
    ServiceUpdateIn,
    SlotOut,
    SlotsOut,
    SlotsQuery,
    WeeklyHours,
    _ClientFields,
    _SlotFields,
)
from core.bookings.schemas import Calendar as CalendarOut
from core.context import Principal, PrincipalKind, Role, TenantContext, register_scopes
from core.errors import (
    Conflict,
    FieldIssue,
    Gone,
    NotFound,
    PermissionDenied,
    ValidationFailed,
    constraint_error,
)
from core.idempotency import idempotent, idempotent_operation
from core.observability import get_logger
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.preconditions import lock_resource, require_match
from core.tenancy.matching import find_or_create_client
from core.tenancy.models import Client, OrgMember, Person
from core.tenancy.schemas import PersonRef
from core.uow import Database, UnitOfWork

log = get_logger("atlilith.bookings")

READ = "bookings:read"
WRITE = "bookings:write"
register_scopes(
    {
        READ: "read services, working hours, slots and bookings",
        WRITE: "manage services and hours; hold, confirm, cancel and reschedule bookings",
    }
)
MAX_SLOTS = 500
SLOTS_HINT = "query the free slots (GET /v1/bookings/slots, or the bookings_slots tool) and pick one"

constraint_error(
    NO_OVERLAP,
    Conflict(
        "this time is no longer free for this provider",
        code="slot_taken",
        hint=SLOTS_HINT,
    ),
)
constraint_error(
    "uq_services_tenant_id_name",
    Conflict(
        "a service with this name exists in this context",
        code="service_exists",
        hint="choose another name, or update that service",
        errors=[FieldIssue("name", "a service with this name exists", "taken")],
    ),
)
constraint_error(
    "fk_bookings_service_id_services",
    Conflict(
        "this service has bookings and can't be deleted",
        code="service_has_bookings",
        hint="deactivate it instead (active: false): it stops being offered, its bookings stay",
    ),
)
constraint_error(
    "fk_bookings_client_id_clients",
    Conflict(
        "this client has bookings and can't be deleted",
        code="client_has_bookings",
        hint="their bookings keep the client; cancel them first if the client must go",
    ),
)


# --- helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Provider:
    id: uuid.UUID
    slug: str
    display_name: str

    @property
    def ref(self) -> PersonRef:
        return PersonRef(id=self.id, slug=self.slug, display_name=self.display_name)


def _context(org_id: uuid.UUID | None) -> Literal["personal", "org"]:
    return "org" if org_id is not None else "personal"


def _money(amount: Decimal | None, currency: str | None) -> MoneyOut | None:
    return MoneyOut(amount=amount, currency=currency) if amount is not None and currency else None


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _keyset(page: PageRequest, arity: int) -> list[Any] | None:
    return decode_cursor(page.cursor, arity) if page.cursor else None


def _next_cursor(rows: Sequence[Any], limit: int, key: Any) -> str | None:
    return encode_cursor(*key(rows[limit - 1])) if len(rows) > limit else None


def _require_manager(ctx: TenantContext) -> None:
    """Context configuration (services): the person, or an org's owner or admin."""
    ctx.require(WRITE)
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)


def _require_provider_or_manager(ctx: TenantContext, provider_id: uuid.UUID, what: str) -> None:
    if ctx.org_id is None or ctx.person_id == provider_id:
        return
    if ctx.role not in (Role.OWNER, Role.ADMIN):
        raise PermissionDenied(
            f"only the provider or an owner or admin of the org can {what}",
            code="not_the_provider",
            hint="ask the provider of this booking, or an admin of the org",
        )


def _locks_sql(count: int) -> Any:
    # Sorted, so two writers that need the same providers take their locks in the same order.
    if count == 1:
        return text("SELECT pg_advisory_xact_lock(hashtextextended('bookings:provider:' || :p, 0))")
    return text(
        "SELECT pg_advisory_xact_lock(hashtextextended('bookings:provider:' || p::text, 0))"
        " FROM (SELECT p FROM unnest(CAST(:ps AS uuid[])) AS u(p) ORDER BY p) AS s"
    )


async def _lock_providers(uow: UnitOfWork, provider_ids: Sequence[uuid.UUID]) -> None:
    """Writers for one provider take turns (whatever context they act in): no two of them race
    into the exclusion constraint, where concurrent conflicting inserts can deadlock. The
    constraint still holds for any writer that skips this."""
    ids = sorted(set(provider_ids))
    if len(ids) == 1:
        await uow.session.execute(_locks_sql(1), {"p": str(ids[0])})
    else:
        await uow.session.execute(_locks_sql(len(ids)), {"ps": ids})


async def _expire_stale_holds(
    uow: UnitOfWork, provider_ids: Sequence[uuid.UUID], start: dt.datetime, end: dt.datetime
) -> None:
    await uow.session.execute(
        text("SELECT bookings.expire_stale_holds(p, :f, :t) FROM unnest(CAST(:ps AS uuid[])) AS u(p)"),
        {"ps": list(provider_ids), "f": start, "t": end},
    )


async def _busy(
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


async def _service(
    ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID, *, lock: bool = False
) -> Service:
    stmt = (
        select(Service)
        .where(Service.id == service_id, Service.tenant_id == ctx.tenant_id)
        .execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update()
    service = (await uow.session.execute(stmt)).scalar_one_or_none()
    if service is None:
        raise NotFound(
            "no such service in this context",
            code="service_not_found",
            hint="list services with [[bookings.list_services]]",
        )
    return service


def _live_member(ctx: TenantContext) -> Any:
    """Persons who may provide in this context now: the person (personal), or current members."""
    if ctx.org_id is None:
        return Person.id == ctx.person_id
    return Person.id.in_(select(OrgMember.person_id).where(OrgMember.org_id == ctx.org_id))


async def _eligible(
    ctx: TenantContext, uow: UnitOfWork, service_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[_Provider]]:
    """Who delivers each service now, in round-robin order: least recently assigned first."""
    rows = (
        await uow.session.execute(
            select(ServiceProvider.service_id, Person.id, Person.slug, Person.display_name)
            .join(Person, Person.id == ServiceProvider.provider_id)
            .where(
                ServiceProvider.service_id.in_(service_ids),
                ServiceProvider.tenant_id == ctx.tenant_id,
                _live_member(ctx),
            )
            .order_by(
                ServiceProvider.service_id,
                ServiceProvider.last_assigned_at.asc().nulls_first(),
                ServiceProvider.provider_id,
            )
        )
    ).all()
    found: dict[uuid.UUID, list[_Provider]] = {s: [] for s in service_ids}
    for service_id, pid, slug, name in rows:
        found[service_id].append(_Provider(pid, slug, name))
    return found


async def _person_by_slug(uow: UnitOfWork, slug: str) -> uuid.UUID | None:
    found = (
        await uow.session.execute(text("SELECT platform.person_id_by_slug(:s)"), {"s": slug})
    ).scalar_one_or_none()
    return uuid.UUID(str(found)) if found else None


async def _provider(ctx: TenantContext, uow: UnitOfWork, slug: str | None) -> _Provider:
    """A provider of this context by slug (None = yourself): you, or a current member of the org."""
    stmt = select(Person.id, Person.slug, Person.display_name).where(_live_member(ctx))
    stmt = stmt.where(Person.slug == slug.lower()) if slug else stmt.where(Person.id == ctx.person_id)
    row = (await uow.session.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound(
            f"{slug!r} is not a provider in this context" if slug else "you are not a provider here",
            code="provider_not_found",
            hint="in an org, providers are its members ([[tenancy.list_members]]); in your personal "
            "context, only you",
        )
    return _Provider(row.id, row.slug, row.display_name)


def _pick(service: Service, eligible: list[_Provider], slug: str | None) -> list[_Provider]:
    """The providers a booking may go to, in the order to try them."""
    if not eligible:
        raise Conflict(
            "nobody currently delivers this service",
            code="no_providers",
            hint="add providers to the service ([[bookings.update_service]], `providers`)",
        )
    if slug:
        chosen = [p for p in eligible if p.slug == slug.lower()]
        if not chosen:
            raise ValidationFailed(
                f"{slug!r} does not deliver this service",
                code="provider_not_eligible",
                hint="pick one of the providers [[bookings.find_slots]] lists for the slot",
                errors=[FieldIssue("provider", "not a provider of this service")],
            )
        return chosen
    if service.assignment == "specific" and len(eligible) > 1:
        raise ValidationFailed(
            "this service is booked with a specific provider: say which",
            code="provider_required",
            hint="pass `provider`, one of the slugs [[bookings.find_slots]] lists for the slot",
            errors=[FieldIssue("provider", "required for this service")],
        )
    return eligible


def _hours_of(schedule: Schedule | None) -> Hours | None:
    if schedule is None:
        return None
    return Hours(
        zone=ZoneInfo(schedule.time_zone),
        weekly=[WeeklyHours.model_validate(w) for w in schedule.weekly],
        overrides=[DateOverride.model_validate(o) for o in schedule.overrides],
    )


async def _hours(
    ctx: TenantContext, uow: UnitOfWork, provider_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, Hours | None]:
    rows = (
        await uow.session.execute(
            select(Schedule).where(
                Schedule.tenant_id == ctx.tenant_id, Schedule.provider_id.in_(provider_ids)
            )
        )
    ).scalars()
    found: dict[uuid.UUID, Hours | None] = dict.fromkeys(provider_ids)
    for schedule in rows:
        found[schedule.provider_id] = _hours_of(schedule)
    return found


def _rules(service: Service, now: dt.datetime, duration: dt.timedelta | None = None) -> Rules:
    length = duration or dt.timedelta(minutes=service.duration_minutes)
    return Rules(
        duration=length,
        step=dt.timedelta(minutes=service.slot_interval_minutes or service.duration_minutes),
        buffer_before=dt.timedelta(minutes=service.buffer_before_minutes),
        buffer_after=dt.timedelta(minutes=service.buffer_after_minutes),
        earliest=now + dt.timedelta(minutes=service.min_notice_minutes),
        latest=now + dt.timedelta(days=service.max_advance_days),
    )


_UNAVAILABLE = {
    "too_soon": "this start is sooner than the service's minimum notice",
    "too_far_ahead": "this start is further ahead than the service allows",
    "outside_hours": "this time is outside the provider's working hours",
    "no_hours": "the provider has no working hours set in this context",
}


def _unavailable(reason: str) -> ValidationFailed:
    return ValidationFailed(
        _UNAVAILABLE[reason],
        code="slot_unavailable",
        hint=SLOTS_HINT if reason != "no_hours" else "set hours ([[bookings.set_availability]])",
        errors=[FieldIssue("start_at", _UNAVAILABLE[reason], reason)],
    )


def _require_active(service: Service) -> None:
    if not service.active:
        raise Conflict(
            "this service is not offered at the moment",
            code="service_inactive",
            hint="reactivate it (active: true) or choose another service",
        )


async def _client(ctx: TenantContext, uow: UnitOfWork, data: _ClientFields) -> ClientRef | None:
    """The booking's client: an existing one by id, or found/created from contact details."""
    if data.client_id is not None:
        client = (
            await uow.session.execute(
                select(Client).where(Client.id == data.client_id, Client.tenant_id == ctx.tenant_id)
            )
        ).scalar_one_or_none()
        if client is None:
            raise NotFound(
                "no such client in this context",
                code="client_not_found",
                hint="list clients ([[tenancy.list_clients]]), or give the client's email or phone instead",
            )
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
            hint="add `client_email` or `client_phone`, or pass an existing `client_id`",
            errors=[FieldIssue("client_email", "email or phone required")],
        )
    return None


def _client_required() -> ValidationFailed:
    return ValidationFailed(
        "this booking needs a client",
        code="client_required",
        hint="pass `client_id`, or the client's `client_email` or `client_phone` (and name)",
        errors=[FieldIssue("client_id", "required")],
    )


def _event(b: Booking, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "booking_id": str(b.id),
        "service_id": str(b.service_id),
        "provider_id": str(b.provider_id),
        "client_id": str(b.client_id) if b.client_id else None,
        "status": b.status,
        "context": _context(b.org_id),
        "start_at": _iso(b.start_at),
        "end_at": _iso(b.end_at),
        # Analytics reports revenue from these: the price agreed for this booking.
        "price_amount": str(b.price_amount) if b.price_amount is not None else None,
        "currency": b.currency,
    }
    data.update(extra)
    return data


def _emit(uow: UnitOfWork, action: str, b: Booking, **extra: Any) -> None:
    # Explicit owner: the manage link and the sweeps act outside a person's context.
    uow.emit(f"bookings/booking.{action}", _event(b, **extra), person_id=b.person_id, org_id=b.org_id)


def _status(b: Booking, now: dt.datetime | None = None) -> str:
    if b.status == "held" and b.hold_expires_at is not None and b.hold_expires_at <= (now or utcnow()):
        return "expired"  # not swept yet, but it blocks nothing any more
    return b.status


def _manage(uow: UnitOfWork, b: Booking) -> ManageLinkOut:
    token, expires = links.issue(uow.db.settings, b.id, b.end_at)
    return ManageLinkOut(url=links.url(uow.db.settings, token), token=token, expires_at=expires)


def _out(
    b: Booking,
    service: ServiceRef,
    provider: PersonRef,
    client: ClientRef | None,
    manage: ManageLinkOut | None = None,
) -> BookingOut:
    cancellation = None
    if b.cancelled_by and b.cancelled_at:
        by_client = b.cancelled_by == "client"
        cancellation = CancellationOut(
            by=b.cancelled_by,
            at=b.cancelled_at,
            reason=None if by_client else b.cancel_reason,
            untrusted_reason=b.cancel_reason if by_client else None,
            fee=_money(b.cancellation_fee, b.currency),
        )
    return BookingOut(
        id=b.id,
        status=_status(b),
        service=service,
        provider=provider,
        client=client,
        start_at=b.start_at,
        end_at=b.end_at,
        client_time_zone=b.client_time_zone,
        hold_expires_at=b.hold_expires_at,
        price=_money(b.price_amount, b.currency),
        location_kind=b.location_kind,
        location=b.location,
        notes=b.notes,
        untrusted_client_note=b.client_note,
        decline_reason=b.decline_reason,
        cancellation=cancellation,
        reschedules=[RescheduleOut.model_validate(r) for r in b.reschedules],
        context=_context(b.org_id),
        org_id=b.org_id,
        confirmed_at=b.confirmed_at,
        created_at=b.created_at,
        updated_at=b.updated_at,
        manage=manage,
    )


def _former(provider_id: uuid.UUID) -> PersonRef:
    return PersonRef(id=provider_id, slug="former-member", display_name="Former member")


def _booking_query(ctx: TenantContext) -> Any:
    return (
        select(Booking, Service.name, Service.duration_minutes, Person.slug, Person.display_name, Client)
        .join(Service, Service.id == Booking.service_id)
        .outerjoin(Person, Person.id == Booking.provider_id)
        .outerjoin(Client, Client.id == Booking.client_id)
        .where(Booking.tenant_id == ctx.tenant_id)
    )


def _row_out(row: Any, manage: ManageLinkOut | None = None) -> BookingOut:
    b, service_name, duration, slug, display_name, client = row
    provider = (
        PersonRef(id=b.provider_id, slug=slug, display_name=display_name) if slug else _former(b.provider_id)
    )
    return _out(
        b,
        ServiceRef(id=b.service_id, name=service_name, duration_minutes=duration),
        provider,
        ClientRef(id=client.id, name=client.name, email=client.email, phone=client.phone) if client else None,
        manage,
    )


async def _booking_row(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, *, lock: bool = False
) -> Any:
    # populate_existing: a row read again after an UPDATE shows the new values.
    stmt = _booking_query(ctx).where(Booking.id == booking_id).execution_options(populate_existing=True)
    if lock:
        stmt = stmt.with_for_update(of=Booking)
    row = (await uow.session.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound(
            "no such booking in this context",
            code="booking_not_found",
            hint="list bookings with [[bookings.list_bookings]]",
        )
    return row


def _invalid(b: Booking, action: str, allowed: str) -> Conflict:
    return Conflict(
        f"a booking that is {_status(b)} can't be {action}",
        code="invalid_transition",
        hint=f"only {allowed} bookings can be {action}; get the booking to see its state",
        extra={"status": _status(b)},
    )


async def _apply(uow: UnitOfWork, booking_id: uuid.UUID, **values: Any) -> None:
    await uow.session.execute(
        update(Booking)
        .where(Booking.id == booking_id)
        .values(**values, updated_at=func.now())
        .execution_options(synchronize_session=False)
    )


# --- services -----------------------------------------------------------------------------------


async def _service_out(ctx: TenantContext, uow: UnitOfWork, services: list[Service]) -> list[ServiceOut]:
    eligible = await _eligible(ctx, uow, [s.id for s in services]) if services else {}
    return [
        ServiceOut(
            id=s.id,
            name=s.name,
            description=s.description,
            duration_minutes=s.duration_minutes,
            buffer_before_minutes=s.buffer_before_minutes,
            buffer_after_minutes=s.buffer_after_minutes,
            min_notice_minutes=s.min_notice_minutes,
            max_advance_days=s.max_advance_days,
            slot_interval_minutes=s.slot_interval_minutes,
            price=_money(s.price_amount, s.currency),
            location_kind=s.location_kind,
            location=s.location,
            assignment=s.assignment,
            providers=[p.ref for p in sorted(eligible.get(s.id, []), key=lambda p: p.slug)],
            cancel_notice_minutes=s.cancel_notice_minutes,
            late_cancel_fee=_money(s.late_cancel_fee, s.currency),
            active=s.active,
            context=_context(s.org_id),
            org_id=s.org_id,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )
        for s in services
    ]


async def _provider_ids(ctx: TenantContext, uow: UnitOfWork, slugs: list[str] | None) -> list[uuid.UUID]:
    if ctx.org_id is None:
        if slugs and any(s.lower() != (ctx.person_slug or "") for s in slugs):
            raise ValidationFailed(
                "in your personal context you are the only provider",
                code="provider_not_member",
                hint="create the service in an org to have other members deliver it",
                errors=[FieldIssue("providers", "only yourself")],
            )
        return [ctx.person_id]
    if not slugs:
        return [ctx.person_id]
    ids: list[uuid.UUID] = []
    for slug in dict.fromkeys(s.lower() for s in slugs):
        provider = await _provider(ctx, uow, slug)
        ids.append(provider.id)
    return ids


async def _set_providers(
    ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID, ids: list[uuid.UUID]
) -> None:
    await uow.session.execute(
        delete(ServiceProvider).where(
            ServiceProvider.service_id == service_id,
            ServiceProvider.tenant_id == ctx.tenant_id,
            ServiceProvider.provider_id.not_in(ids),
        )
    )
    await uow.session.execute(
        pg_insert(ServiceProvider)
        .values(
            [
                {"service_id": service_id, "provider_id": p, "person_id": ctx.person_id, "org_id": ctx.org_id}
                for p in ids
            ]
        )
        .on_conflict_do_nothing()
    )


def _check_price(amount: Decimal | None, currency: str | None, fee: Decimal | None) -> None:
    if (amount is None) != (currency is None) or (fee is not None and currency is None):
        raise ValidationFailed(
            "a price needs both an amount and a currency (and a late fee needs the currency)",
            code="validation_failed",
            hint="send `price_amount` and `currency` together",
            errors=[FieldIssue("currency", "required with a price")],
        )


async def list_services(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, active: bool | None = None
) -> Page[ServiceOut]:
    """Services of the current context, oldest first."""
    ctx.require(READ)
    stmt = (
        select(Service)
        .where(Service.tenant_id == ctx.tenant_id)
        .order_by(Service.created_at, Service.id)
        .limit(page.limit + 1)
    )
    if active is not None:
        stmt = stmt.where(Service.active.is_(active))
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(Service.created_at, Service.id) > tuple_(*after))
    rows = list((await uow.session.execute(stmt)).scalars())
    return Page[ServiceOut](
        items=await _service_out(ctx, uow, rows[: page.limit]),
        next_cursor=_next_cursor(rows, page.limit, lambda s: (s.created_at, s.id)),
    )


async def get_service(ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID) -> ServiceOut:
    ctx.require(READ)
    return (await _service_out(ctx, uow, [await _service(ctx, uow, service_id)]))[0]


@idempotent_operation("bookings.services.create")
async def create_service(
    ctx: TenantContext, uow: UnitOfWork, data: ServiceIn, idempotency_key: str | None = None
) -> ServiceOut:
    """Create a bookable service (person, or an org's owner/admin)."""
    _require_manager(ctx)
    providers = await _provider_ids(ctx, uow, data.providers)
    values = data.model_dump(exclude={"providers"})
    service = (
        await uow.session.execute(
            insert(Service)
            .values(id=uuid.uuid4(), person_id=ctx.person_id, org_id=ctx.org_id, **values)
            .returning(Service)
        )
    ).scalar_one()
    await _set_providers(ctx, uow, service.id, providers)
    uow.emit("bookings/service.created", {"service_id": service.id, "name": service.name})
    return (await _service_out(ctx, uow, [service]))[0]


async def update_service(
    ctx: TenantContext,
    uow: UnitOfWork,
    service_id: uuid.UUID,
    data: ServiceUpdateIn,
    if_match: str | None = None,
) -> ServiceOut:
    """Change a service; omitted fields stay. Existing bookings keep the terms they were made on.
    `if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    _require_manager(ctx)
    # Locked even without If-Match: every writer of a service (and its providers) queues here.
    service = await _service(ctx, uow, service_id, lock=True)
    if if_match is not None:
        require_match(if_match, (await _service_out(ctx, uow, [service]))[0], what="service")
    fields = data.model_dump(exclude_unset=True, exclude={"providers"})
    for required in ("name", "duration_minutes", "active", "location_kind", "assignment"):
        if required in fields and fields[required] is None:
            raise ValidationFailed(f"{required} cannot be null", errors=[FieldIssue(required, "required")])
    merged = {k: fields.get(k, getattr(service, k)) for k in ("price_amount", "currency", "late_cancel_fee")}
    _check_price(merged["price_amount"], merged["currency"], merged["late_cancel_fee"])
    if fields:
        await uow.session.execute(
            update(Service)
            .where(Service.id == service.id, Service.tenant_id == ctx.tenant_id)
            .values(**fields, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )
    if data.providers is not None:
        await _set_providers(ctx, uow, service.id, await _provider_ids(ctx, uow, data.providers))
    changed = sorted(set(fields) | ({"providers"} if data.providers is not None else set()))
    if changed:
        uow.emit("bookings/service.updated", {"service_id": service.id, "changed": changed})
    return (await _service_out(ctx, uow, [await _service(ctx, uow, service_id)]))[0]


async def delete_service(ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID) -> None:
    """Delete a service that was never booked (otherwise: deactivate it)."""
    _require_manager(ctx)
    service = await _service(ctx, uow, service_id)
    await uow.session.execute(
        delete(Service).where(Service.id == service.id, Service.tenant_id == ctx.tenant_id)
    )
    uow.emit("bookings/service.deleted", {"service_id": service_id, "name": service.name})


# --- availability -------------------------------------------------------------------------------


async def get_availability(
    ctx: TenantContext, uow: UnitOfWork, provider: str | None = None
) -> AvailabilityOut:
    """A provider's working hours in this context (default: yours)."""
    ctx.require(READ)
    who = await _provider(ctx, uow, provider)
    schedule = (
        await uow.session.execute(
            select(Schedule).where(Schedule.tenant_id == ctx.tenant_id, Schedule.provider_id == who.id)
        )
    ).scalar_one_or_none()
    return AvailabilityOut(
        provider=who.ref,
        context=_context(ctx.org_id),
        configured=schedule is not None,
        time_zone=schedule.time_zone if schedule else None,
        weekly=[WeeklyHours.model_validate(w) for w in schedule.weekly] if schedule else [],
        overrides=[DateOverride.model_validate(o) for o in schedule.overrides] if schedule else [],
        updated_at=schedule.updated_at if schedule else None,
    )


async def set_availability(
    ctx: TenantContext,
    uow: UnitOfWork,
    provider: str | None,
    data: AvailabilityIn,
    if_match: str | None = None,
) -> AvailabilityOut:
    """Replace a provider's working hours in this context: yours, or (owner/admin) a member's.
    `if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    ctx.require(WRITE)
    who = await _provider(ctx, uow, provider)
    if who.id != ctx.person_id:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    # Hours may have no row yet, so writers queue on the (context, provider) pair itself.
    await lock_resource(uow, "bookings.availability", ctx.tenant_id, who.id)
    if if_match is not None:
        require_match(if_match, await get_availability(ctx, uow, who.slug), what="availability")
    weekly = [w.model_dump(mode="json") for w in sorted(data.weekly, key=lambda w: (w.weekday, w.start))]
    overrides = [o.model_dump(mode="json") for o in sorted(data.overrides, key=lambda o: o.date)]
    stmt = pg_insert(Schedule).values(
        id=uuid.uuid4(),
        provider_id=who.id,
        person_id=ctx.person_id,
        org_id=ctx.org_id,
        time_zone=data.time_zone,
        weekly=weekly,
        overrides=overrides,
    )
    await uow.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Schedule.tenant_id, Schedule.provider_id],
            set_={
                "time_zone": data.time_zone,
                "weekly": weekly,
                "overrides": overrides,
                "updated_at": func.now(),
            },
        )
    )
    uow.emit("bookings/availability.updated", {"provider_id": who.id, "time_zone": data.time_zone})
    return await get_availability(ctx, uow, who.slug)


# --- slots --------------------------------------------------------------------------------------


async def _slots(
    ctx: TenantContext,
    uow: UnitOfWork,
    service: Service,
    providers: list[_Provider],
    q: SlotsQuery,
    except_booking: uuid.UUID | None = None,
    duration: dt.timedelta | None = None,
) -> SlotsOut:
    zone = ZoneInfo(q.time_zone)
    start = dt.datetime.combine(q.from_date, dt.time(), tzinfo=zone).astimezone(dt.UTC)
    end = dt.datetime.combine(q.to_date + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
    rules = _rules(service, utcnow(), duration)
    ids = [p.id for p in providers]
    hours = await _hours(ctx, uow, ids)
    busy = await _busy(
        uow, ids, start - rules.buffer_before, end + rules.duration + rules.buffer_after, except_booking
    )
    by_start: dict[dt.datetime, list[str]] = {}
    for p in providers:  # round-robin order: the first provider of a slot is next in turn
        if (h := hours.get(p.id)) is not None:
            for s in slot_starts(h, rules, busy[p.id], start, end):
                by_start.setdefault(s, []).append(p.slug)
    ordered = sorted(by_start.items())
    return SlotsOut(
        service=ServiceRef(id=service.id, name=service.name, duration_minutes=service.duration_minutes),
        time_zone=q.time_zone,
        from_date=q.from_date,
        to_date=q.to_date,
        slots=[
            SlotOut(start=s.astimezone(zone), end=(s + rules.duration).astimezone(zone), providers=slugs)
            for s, slugs in ordered[:MAX_SLOTS]
        ],
        truncated=len(ordered) > MAX_SLOTS,
    )


async def find_slots(ctx: TenantContext, uow: UnitOfWork, q: SlotsQuery) -> SlotsOut:
    """Free start times of a service between two dates, in the requester's time zone."""
    ctx.require(READ)
    service = await _service(ctx, uow, q.service_id)
    _require_active(service)
    eligible = (await _eligible(ctx, uow, [service.id]))[service.id]
    if q.provider:
        eligible = _pick(service, eligible, q.provider)
    return await _slots(ctx, uow, service, eligible, q)


# --- creating bookings ----------------------------------------------------------------------------


async def _create(
    ctx: TenantContext, uow: UnitOfWork, data: _SlotFields, status: str, ttl: int | None
) -> BookingOut:
    ctx.require(WRITE)
    service = await _service(ctx, uow, data.service_id)
    _require_active(service)
    candidates = _pick(service, (await _eligible(ctx, uow, [service.id]))[service.id], data.provider)
    now = utcnow()
    rules = _rules(service, now)
    start = data.start_at.astimezone(dt.UTC)
    end = start + rules.duration
    hours = await _hours(ctx, uow, [p.id for p in candidates])
    reasons = {p.id: fits(h, rules, start) if (h := hours[p.id]) else "no_hours" for p in candidates}
    candidates = [p for p in candidates if reasons[p.id] is None]
    if not candidates:
        raise _unavailable(next(r for r in reasons.values() if r))
    client = await _client(ctx, uow, data)
    if status == "requested" and client is None:
        raise _client_required()
    blocked = (start - rules.buffer_before, end + rules.buffer_after)
    ids = [p.id for p in candidates]
    await _lock_providers(uow, ids)
    await _expire_stale_holds(uow, ids, *blocked)
    provider = candidates[0]
    if len(candidates) > 1:
        # Round robin: the least recently assigned provider who is free then (read under the
        # locks, so it is exact for every writer that takes them).
        busy = await _busy(uow, ids, *blocked)
        free = [p for p in candidates if not busy[p.id].overlaps(*blocked)]
        if not free:
            raise Conflict("every provider of this service is busy then", code="slot_taken", hint=SLOTS_HINT)
        provider = free[0]
    ttl_seconds = ttl or uow.db.settings.bookings_hold_ttl_seconds
    booking = (
        await uow.session.execute(
            insert(Booking)
            .values(
                id=uuid.uuid4(),
                service_id=service.id,
                provider_id=provider.id,
                client_id=client.id if client else None,
                status=status,
                start_at=start,
                end_at=end,
                buffer_before_minutes=service.buffer_before_minutes,
                buffer_after_minutes=service.buffer_after_minutes,
                hold_expires_at=now + dt.timedelta(seconds=ttl_seconds) if status == "held" else None,
                client_time_zone=data.time_zone,
                price_amount=service.price_amount,
                currency=service.currency,
                location_kind=service.location_kind,
                location=service.location,
                notes=data.notes,
                client_note=data.client_note,
                person_id=ctx.person_id,
                org_id=ctx.org_id,
            )
            .returning(Booking)
        )
    ).scalar_one()
    await uow.session.execute(
        update(ServiceProvider)
        .where(ServiceProvider.service_id == service.id, ServiceProvider.provider_id == provider.id)
        .values(last_assigned_at=func.now(), assigned_count=ServiceProvider.assigned_count + 1)
    )
    extra = {"hold_expires_at": _iso(booking.hold_expires_at)} if booking.hold_expires_at else {}
    _emit(uow, status, booking, **extra)
    return _out(
        booking,
        ServiceRef(id=service.id, name=service.name, duration_minutes=service.duration_minutes),
        provider.ref,
        client,
        _manage(uow, booking) if status == "requested" else None,
    )


@idempotent_operation("bookings.hold")
async def hold(
    ctx: TenantContext, uow: UnitOfWork, data: HoldIn, idempotency_key: str | None = None
) -> BookingOut:
    """Reserve a slot for a short time (default 5 minutes) while the details are collected;
    confirm it to book. An expired hold blocks nothing."""
    return await _create(ctx, uow, data, "held", data.ttl_seconds)


@idempotent_operation("bookings.request")
async def request_booking(
    ctx: TenantContext, uow: UnitOfWork, data: RequestIn, idempotency_key: str | None = None
) -> BookingOut:
    """Ask for a slot on the client's behalf; it stays blocked until the provider confirms or
    declines."""
    return await _create(ctx, uow, data, "requested", None)


# --- the lifecycle --------------------------------------------------------------------------------


@idempotent_operation("bookings.confirm")
async def confirm_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    data: ConfirmIn,
    idempotency_key: str | None = None,
) -> BookingOut:
    """Confirm a hold (with the client's details, if the hold had none) or a request (the
    provider's yes). Confirming a confirmed booking changes nothing."""
    ctx.require(WRITE)
    row = await _booking_row(ctx, uow, booking_id, lock=True)
    b: Booking = row[0]
    status = _status(b)
    if status == "confirmed":
        return _row_out(row, _manage(uow, b))
    if status == "expired":
        raise Gone(
            "this hold has expired and its slot was released",
            code="hold_expired",
            hint="hold the slot again (it may have been taken): " + SLOTS_HINT,
        )
    if status == "requested":
        _require_provider_or_manager(ctx, b.provider_id, "confirm a request")
    elif status != "held":
        raise _invalid(b, "confirmed", "held or requested")
    client = await _client(ctx, uow, data)
    if client is None and b.client_id is None:
        raise _client_required()
    values: dict[str, Any] = {"status": "confirmed", "confirmed_at": func.now(), "hold_expires_at": None}
    if client is not None:
        values["client_id"] = client.id
    if data.notes is not None:
        values["notes"] = data.notes
    if data.client_note is not None:
        values["client_note"] = data.client_note
    if data.time_zone is not None:
        values["client_time_zone"] = data.time_zone
    await _apply(uow, b.id, **values)
    row = await _booking_row(ctx, uow, b.id)
    _emit(uow, "confirmed", row[0], previous_status=status)
    return _row_out(row, _manage(uow, row[0]))


async def decline_booking(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, data: DeclineIn
) -> BookingOut:
    """The provider says no to a request, with a reason the client may be told."""
    ctx.require(WRITE)
    row = await _booking_row(ctx, uow, booking_id, lock=True)
    b: Booking = row[0]
    if b.status == "declined":
        return _row_out(row)
    if b.status != "requested":
        raise _invalid(b, "declined", "requested")
    _require_provider_or_manager(ctx, b.provider_id, "decline a request")
    await _apply(uow, b.id, status="declined", decline_reason=data.reason)
    row = await _booking_row(ctx, uow, b.id)
    _emit(uow, "declined", row[0], reason=data.reason)
    return _row_out(row)


def _late_fee(b: Booking, service: Service, by: str, now: dt.datetime) -> tuple[MoneyOut | None, str | None]:
    if by != "client" or service.cancel_notice_minutes <= 0:
        return None, None
    deadline = b.start_at - dt.timedelta(minutes=service.cancel_notice_minutes)
    hours = service.cancel_notice_minutes / 60
    if now <= deadline:
        return None, f"free cancellation until {_iso(deadline)} ({hours:g} h before the start)"
    fee = _money(service.late_cancel_fee, b.currency or service.currency)
    note = f"late cancellation: less than {hours:g} h before the start"
    return fee, (note + (f"; a fee of {fee.amount} {fee.currency} applies" if fee else "; no fee is set"))


async def _cancel(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    by: str,
    reason: str | None,
    dry_run: bool,
) -> BookingChangeOut:
    row = await _booking_row(ctx, uow, booking_id, lock=not dry_run)
    b: Booking = row[0]
    if b.status == "cancelled":
        return BookingChangeOut(
            dry_run=dry_run, booking=_row_out(row), changes=[], policy_note="already cancelled"
        )
    if _status(b) not in ACTIVE_STATES:
        raise _invalid(b, "cancelled", "held, requested or confirmed")
    now = utcnow()
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    fee, note = _late_fee(b, service, by, now)
    changes = [f"status: {b.status} -> cancelled", f"the slot {_iso(b.start_at)} is released"]
    if fee:
        changes.append(f"late cancellation fee: {fee.amount} {fee.currency}")
    if dry_run:
        preview = _row_out(row).model_copy(
            update={
                "status": "cancelled",
                "cancellation": CancellationOut(
                    by=by,
                    at=now,
                    reason=None if by == "client" else reason,
                    untrusted_reason=reason if by == "client" else None,
                    fee=fee,
                ),
            }
        )
        return BookingChangeOut(dry_run=True, booking=preview, changes=changes, fee=fee, policy_note=note)
    previous = b.status
    await _apply(
        uow,
        b.id,
        status="cancelled",
        cancelled_by=by,
        cancel_reason=reason,
        cancelled_at=func.now(),
        cancellation_fee=fee.amount if fee else None,
    )
    row = await _booking_row(ctx, uow, b.id)
    _emit(
        uow,
        "cancelled",
        row[0],
        by=by,
        previous_status=previous,
        late=fee is not None or (note or "").startswith("late"),
        fee=fee.model_dump(mode="json") if fee else None,
    )
    return BookingChangeOut(dry_run=False, booking=_row_out(row), changes=changes, fee=fee, policy_note=note)


async def cancel_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    data: CancelIn,
    idempotency_key: str | None = None,
) -> BookingChangeOut:
    """Cancel a booking (by the provider, or on the client's behalf: then the late-cancellation
    policy applies). `dry_run` shows what would change, and any fee, without changing anything."""
    ctx.require(WRITE)

    async def work() -> BookingChangeOut:
        return await _cancel(ctx, uow, booking_id, data.by, data.reason, data.dry_run)

    if data.dry_run:  # a preview records nothing, not even its idempotency key
        return await work()
    payload = {"booking_id": booking_id, "data": data}
    return await idempotent(ctx, uow, idempotency_key, "bookings.cancel", payload, BookingChangeOut, work)


async def _reschedule(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    new_start: dt.datetime,
    provider_slug: str | None,
    by: str,
    dry_run: bool,
) -> BookingChangeOut:
    row = await _booking_row(ctx, uow, booking_id, lock=not dry_run)
    b: Booking = row[0]
    if _status(b) not in ACTIVE_STATES:
        raise _invalid(b, "rescheduled", "held, requested or confirmed")
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    eligible = (await _eligible(ctx, uow, [service.id]))[service.id]
    current = next((p for p in eligible if p.id == b.provider_id), None)
    if provider_slug:
        target = _pick(service, eligible, provider_slug)[0]
    elif current is not None:
        target = current
    else:
        raise ValidationFailed(
            "the booking's provider no longer delivers this service",
            code="provider_not_eligible",
            hint="pass `provider` to move the booking to another provider",
            errors=[FieldIssue("provider", "required")],
        )
    now = utcnow()
    duration = b.end_at - b.start_at
    rules = _rules(service, now, duration)
    start = new_start.astimezone(dt.UTC)
    end = start + duration
    if start == b.start_at and target.id == b.provider_id:
        return BookingChangeOut(dry_run=dry_run, booking=_row_out(row), changes=[], policy_note="no change")
    hours = (await _hours(ctx, uow, [target.id]))[target.id]
    reason = fits(hours, rules, start) if hours else "no_hours"
    if reason is not None:
        raise _unavailable(reason)
    before = dt.timedelta(minutes=b.buffer_before_minutes)
    after = dt.timedelta(minutes=b.buffer_after_minutes)
    changes = [f"start: {_iso(b.start_at)} -> {_iso(start)}", f"end: {_iso(b.end_at)} -> {_iso(end)}"]
    if target.id != b.provider_id:
        changes.append(f"provider: -> {target.slug}")
    if dry_run:
        busy = await _busy(uow, [target.id], start - before, end + after, except_booking=b.id)
        if busy[target.id].overlaps(start - before, end + after):
            raise Conflict("the new time is not free for this provider", code="slot_taken", hint=SLOTS_HINT)
        preview = _row_out(row).model_copy(update={"start_at": start, "end_at": end, "provider": target.ref})
        return BookingChangeOut(dry_run=True, booking=preview, changes=changes)
    previous_start, previous_end, previous_provider = b.start_at, b.end_at, b.provider_id
    await _lock_providers(uow, [b.provider_id, target.id])
    await _expire_stale_holds(uow, [target.id], start - before, end + after)
    entry = RescheduleOut(
        from_start_at=b.start_at,
        from_end_at=b.end_at,
        to_start_at=start,
        to_end_at=end,
        by=by,
        at=now,
        from_provider_id=b.provider_id if target.id != b.provider_id else None,
    )
    # The constraint checks the moved row against every other active booking of the provider:
    # a reschedule onto taken time fails here, whatever the read above saw.
    await _apply(
        uow,
        b.id,
        start_at=start,
        end_at=end,
        provider_id=target.id,
        reminder_sent_at=None,
        reschedules=Booking.reschedules.op("||")(
            cast(literal("[" + entry.model_dump_json() + "]", type_=Text), JSONB)
        ),
    )
    row = await _booking_row(ctx, uow, b.id)
    _emit(
        uow,
        "rescheduled",
        row[0],
        by=by,
        previous_start_at=_iso(previous_start),
        previous_end_at=_iso(previous_end),
        previous_provider_id=str(previous_provider),
    )
    manage = _manage(uow, row[0]) if row[0].status != "held" else None
    return BookingChangeOut(dry_run=False, booking=_row_out(row, manage), changes=changes)


async def reschedule_booking(
    ctx: TenantContext,
    uow: UnitOfWork,
    booking_id: uuid.UUID,
    data: RescheduleIn,
    idempotency_key: str | None = None,
) -> BookingChangeOut:
    """Move a booking to a new time (and optionally another provider). It keeps its id; the
    previous times go to its history. Refused when the new time is taken (409 `slot_taken`).
    `dry_run` checks and shows the change without making it."""
    ctx.require(WRITE)

    async def work() -> BookingChangeOut:
        return await _reschedule(ctx, uow, booking_id, data.start_at, data.provider, "provider", data.dry_run)

    if data.dry_run:
        return await work()
    payload = {"booking_id": booking_id, "data": data}
    return await idempotent(ctx, uow, idempotency_key, "bookings.reschedule", payload, BookingChangeOut, work)


async def record_outcome(
    ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID, data: OutcomeIn
) -> BookingOut:
    """After the start time: the booking happened (`completed`) or the client didn't come (`no_show`)."""
    ctx.require(WRITE)
    row = await _booking_row(ctx, uow, booking_id, lock=True)
    b: Booking = row[0]
    if b.status == data.outcome:
        return _row_out(row)
    if b.status != "confirmed":
        raise _invalid(b, f"marked {data.outcome}", "confirmed")
    _require_provider_or_manager(ctx, b.provider_id, "record the outcome")
    if b.start_at > utcnow():
        raise Conflict(
            "this booking has not started yet",
            code="not_started",
            hint="record the outcome after the start time; cancel or reschedule before it",
        )
    await _apply(uow, b.id, status=data.outcome)
    row = await _booking_row(ctx, uow, b.id)
    _emit(uow, data.outcome, row[0])
    return _row_out(row)


# --- reading ------------------------------------------------------------------------------------


async def list_bookings(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, filters: BookingFilters | None = None
) -> Page[BookingOut]:
    """Bookings of this context by start time (earliest first), filtered."""
    ctx.require(READ)
    f = filters or BookingFilters()
    stmt = _booking_query(ctx).order_by(Booking.start_at, Booking.id).limit(page.limit + 1)
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
        stmt = stmt.where(Booking.provider_id == (await _person_by_slug(uow, f.provider)))
    if f.client_id is not None:
        stmt = stmt.where(Booking.client_id == f.client_id)
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(Booking.start_at, Booking.id) > tuple_(*after))
    rows = (await uow.session.execute(stmt)).all()
    return Page[BookingOut](
        items=[_row_out(r) for r in rows[: page.limit]],
        next_cursor=_next_cursor(rows, page.limit, lambda r: (r[0].start_at, r[0].id)),
    )


async def get_booking(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> BookingOut:
    ctx.require(READ)
    return _row_out(await _booking_row(ctx, uow, booking_id))


async def manage_link(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> ManageLinkOut:
    """A fresh link for the client to view, cancel or reschedule this booking (and nothing else)."""
    ctx.require(WRITE)
    b: Booking = (await _booking_row(ctx, uow, booking_id))[0]
    return _manage(uow, b)


def _entry(b: Booking, service_name: str, who: str | None, for_client: bool) -> calendar.Entry:
    return calendar.Entry(
        booking_id=b.id,
        status=_status(b),
        summary=f"{service_name} with {who}" if who else service_name,
        start_at=b.start_at,
        end_at=b.end_at,
        updated_at=b.updated_at,
        sequence=len(b.reschedules),
        location=b.location,
        description=None if for_client else (f"Notes: {b.notes}" if b.notes else None),
    )


async def booking_ics(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> CalendarOut:
    """The booking as an iCalendar (.ics) document."""
    ctx.require(READ)
    row = await _booking_row(ctx, uow, booking_id)
    b, service_name, _, _, _, client = row
    content = calendar.document(
        [_entry(b, service_name, client.name if client else None, False)], service_name
    )
    return CalendarOut(filename=f"booking-{b.id}.ics", content=content)


# --- calendar feeds ------------------------------------------------------------------------------

FEED_PREFIX = "atf_"


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
    stmt = (
        select(CalendarFeed)
        .where(CalendarFeed.person_id == ctx.person_id)
        .order_by(CalendarFeed.created_at, CalendarFeed.id)
        .limit(page.limit + 1)
    )
    if (after := _keyset(page, 2)) is not None:
        stmt = stmt.where(tuple_(CalendarFeed.created_at, CalendarFeed.id) > tuple_(*after))
    rows = list((await uow.session.execute(stmt)).scalars())
    return Page[FeedOut](
        items=[FeedOut.model_validate(f, from_attributes=True) for f in rows[: page.limit]],
        next_cursor=_next_cursor(rows, page.limit, lambda f: (f.created_at, f.id)),
    )


async def revoke_feed(ctx: TenantContext, uow: UnitOfWork, feed_id: uuid.UUID) -> FeedOut:
    """Revoke a feed: its URL answers 404 from now on. Revoking twice changes nothing."""
    ctx.require(READ)
    feed = (
        await uow.session.execute(
            select(CalendarFeed).where(CalendarFeed.id == feed_id, CalendarFeed.person_id == ctx.person_id)
        )
    ).scalar_one_or_none()
    if feed is None:
        raise NotFound("no such feed", code="feed_not_found", hint="list your feeds: [[bookings.list_feeds]]")
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
            [_entry(b, service_name, client_name, False) for b, service_name, client_name in rows], feed.name
        )
    return CalendarOut(filename="bookings.ics", content=content)


# --- the client's manage link ----------------------------------------------------------------------


@asynccontextmanager
async def _managed(db: Database, token: str) -> AsyncIterator[tuple[TenantContext, UnitOfWork, Booking]]:
    """The booking a manage token names, in a transaction narrowed to that booking's tenant."""
    booking_id = links.read(db.settings, token)
    async with db.system() as uow:
        owner = (
            await uow.session.execute(
                select(Booking.provider_id, Booking.org_id).where(Booking.id == booking_id)
            )
        ).one_or_none()
        if owner is None:
            raise NotFound("no booking for this link", code="manage_link_invalid", hint="ask the provider")
        # Work as the booking's provider in its context: their calendar is the one that changes.
        await uow.act_as_service(owner.provider_id, owner.org_id)
        ctx = TenantContext(
            principal=Principal(
                kind=PrincipalKind.SERVICE, person_id=owner.provider_id, scopes=frozenset({WRITE})
            ),
            person_id=owner.provider_id,
            org_id=owner.org_id,
            trace_id=uow.trace_id,
        )
        b = (await _booking_row(ctx, uow, booking_id))[0]
        yield ctx, uow, b


async def _managed_out(ctx: TenantContext, uow: UnitOfWork, booking_id: uuid.UUID) -> ManagedBookingOut:
    row = await _booking_row(ctx, uow, booking_id)
    b: Booking = row[0]
    service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
    status = _status(b)
    open_ = status in ("confirmed", "requested") and b.start_at > utcnow()
    policy = None
    if service.cancel_notice_minutes > 0:
        fee = _money(service.late_cancel_fee, b.currency or service.currency)
        policy = f"cancel at least {service.cancel_notice_minutes / 60:g} h before the start" + (
            f"; later cancellations cost {fee.amount} {fee.currency}" if fee else ""
        )
    return ManagedBookingOut(
        id=b.id,
        status=status,
        service=row[1],
        provider=row[4] or "Former member",
        start_at=b.start_at.astimezone(ZoneInfo(b.client_time_zone)) if b.client_time_zone else b.start_at,
        end_at=b.end_at.astimezone(ZoneInfo(b.client_time_zone)) if b.client_time_zone else b.end_at,
        time_zone=b.client_time_zone,
        location_kind=b.location_kind,
        location=b.location,
        price=_money(b.price_amount, b.currency),
        can_cancel=open_,
        can_reschedule=open_,
        cancellation_policy=policy,
    )


def _closed(b: Booking) -> Conflict:
    return Conflict(
        "this booking can no longer be changed here",
        code="booking_closed",
        hint="contact the provider",
        extra={"status": _status(b)},
    )


async def manage_view(db: Database, token: str) -> ManagedBookingOut:
    """What the client sees through their link."""
    async with _managed(db, token) as (ctx, uow, b):
        return await _managed_out(ctx, uow, b.id)


async def manage_slots(
    db: Database, token: str, from_date: dt.date, to_date: dt.date, time_zone: str | None = None
) -> SlotsOut:
    """Times the client may move their booking to (same service and provider)."""
    async with _managed(db, token) as (ctx, uow, b):
        service = (await uow.session.execute(select(Service).where(Service.id == b.service_id))).scalar_one()
        provider = (
            await uow.session.execute(
                select(Person.id, Person.slug, Person.display_name).where(Person.id == b.provider_id)
            )
        ).one()
        q = SlotsQuery(
            service_id=service.id,
            from_date=from_date,
            to_date=to_date,
            time_zone=time_zone or b.client_time_zone or "UTC",
        )
        return await _slots(ctx, uow, service, [_Provider(*provider)], q, b.id, b.end_at - b.start_at)


async def manage_cancel(db: Database, token: str, data: ManageCancelIn) -> ManagedChangeOut:
    """The client cancels their booking (before it starts); the late-cancellation policy applies."""
    async with _managed(db, token) as (ctx, uow, b):
        if b.status != "cancelled" and (
            _status(b) not in ("confirmed", "requested") or b.start_at <= utcnow()
        ):
            raise _closed(b)
        change = await _cancel(ctx, uow, b.id, "client", data.reason, data.dry_run)
        return ManagedChangeOut(
            dry_run=change.dry_run,
            booking=await _managed_out(ctx, uow, b.id),
            changes=change.changes,
            fee=change.fee,
            policy_note=change.policy_note,
        )


async def manage_reschedule(db: Database, token: str, data: ManageRescheduleIn) -> ManagedChangeOut:
    """The client moves their booking to another free time of the same provider."""
    async with _managed(db, token) as (ctx, uow, b):
        if _status(b) not in ("confirmed", "requested") or b.start_at <= utcnow():
            raise _closed(b)
        change = await _reschedule(ctx, uow, b.id, data.start_at, None, "client", data.dry_run)
        view = await _managed_out(ctx, uow, b.id)
        if change.dry_run:
            zone = ZoneInfo(b.client_time_zone) if b.client_time_zone else dt.UTC
            view = view.model_copy(
                update={
                    "start_at": change.booking.start_at.astimezone(zone),
                    "end_at": change.booking.end_at.astimezone(zone),
                }
            )
        return ManagedChangeOut(dry_run=change.dry_run, booking=view, changes=change.changes)


async def manage_ics(db: Database, token: str) -> CalendarOut:
    async with _managed(db, token) as (ctx, uow, b):
        row = await _booking_row(ctx, uow, b.id)
        content = calendar.document([_entry(b, row[1], row[4], True)], row[1])
        return CalendarOut(filename=f"booking-{b.id}.ics", content=content)


# --- housekeeping -------------------------------------------------------------------------------


async def expire_holds(uow: UnitOfWork) -> int:
    """Mark holds past their TTL as expired (a scheduled sweep; writes also expire them first)."""
    rows = (
        await uow.session.execute(
            update(Booking)
            .where(Booking.status == "held", Booking.hold_expires_at <= func.now())
            .values(status="expired", updated_at=func.now())
            .returning(Booking.id)
            .execution_options(synchronize_session=False)
        )
    ).all()
    return len(rows)


async def send_due_reminders(uow: UnitOfWork, lead: dt.timedelta | None = None) -> int:
    """Emit `bookings/booking.reminder_due` once per confirmed booking (per booking time: a
    reschedule re-arms it) when its start is within the lead time. The marker is set in the same
    statement that claims the rows, so concurrent sweeps never emit twice."""
    lead = lead or dt.timedelta(minutes=uow.db.settings.bookings_reminder_lead_minutes)
    due = (
        select(Booking.id)
        .where(
            Booking.status == "confirmed",
            Booking.reminder_sent_at.is_(None),
            Booking.start_at > func.now(),
            Booking.start_at <= func.now() + lead,
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    rows = (
        await uow.session.execute(
            update(Booking)
            .where(Booking.id.in_(due), Booking.reminder_sent_at.is_(None))
            .values(reminder_sent_at=func.now())
            .returning(Booking)
            .execution_options(synchronize_session=False)
        )
    ).scalars()
    count = 0
    for b in rows:
        _emit(uow, "reminder_due", b, lead_minutes=int(lead.total_seconds() // 60))
        count += 1
    return count
