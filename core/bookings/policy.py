"""Bookings rules: scopes, who may manage what, notice and the late-cancellation fee, and the
errors a booking attempt can meet."""

from __future__ import annotations

import datetime as dt
import uuid

from core.bookings.availability import Rules
from core.bookings.models import NO_OVERLAP, Booking, Service
from core.bookings.presenters import iso, money, status_of
from core.bookings.queries import Provider, Terms
from core.bookings.schemas import MoneyOut
from core.context import Role, TenantContext, register_scopes
from core.errors import Conflict, FieldIssue, PermissionDenied, ValidationFailed, constraint_error

READ = "bookings:read"
WRITE = "bookings:write"


register_scopes(
    {
        READ: "read services, working hours, slots and bookings",
        WRITE: "manage services and hours; hold, confirm, cancel and reschedule bookings",
    }
)

SLOTS_HINT = "query the free slots with [[bookings.find_slots]] and pick one"

# The database enforces these; they answer as clear errors rather than a bare integrity error.
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


def require_provider_or_manager(ctx: TenantContext, provider_id: uuid.UUID, what: str) -> None:
    if ctx.org_id is None or ctx.person_id == provider_id:
        return
    if ctx.role not in (Role.OWNER, Role.ADMIN):
        raise PermissionDenied(
            f"only the provider or an owner or admin of the org can {what}",
            code="not_the_provider",
            hint="ask the provider of this booking, or an admin of the org",
        )


def pick_providers(service: Terms, eligible: list[Provider], slug: str | None) -> list[Provider]:
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


def rules_for(service: Terms, now: dt.datetime, duration: dt.timedelta | None = None) -> Rules:
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
    "not_offered": "this time is not one of the service's offered start times",
    "current_time": "this is already the booking's time",
    "no_hours": "the provider has no working hours set in this context",
}


def unavailable(reason: str) -> ValidationFailed:
    return ValidationFailed(
        _UNAVAILABLE[reason],
        code="slot_unavailable",
        hint=SLOTS_HINT if reason != "no_hours" else "set hours ([[bookings.set_availability]])",
        errors=[FieldIssue("start_at", _UNAVAILABLE[reason], reason)],
    )


def require_active(service: Terms) -> None:
    if not service.active:
        raise Conflict(
            "this service is not offered at the moment",
            code="service_inactive",
            hint="reactivate it (active: true) or choose another service",
        )


def client_required() -> ValidationFailed:
    return ValidationFailed(
        "this booking needs a client",
        code="client_required",
        hint="say who the client is: an existing client, or their email or phone number (and name)",
        errors=[FieldIssue("client_id", "required")],
    )


def invalid_transition(b: Booking, action: str, allowed: str) -> Conflict:
    return Conflict(
        f"a booking that is {status_of(b)} can't be {action}",
        code="invalid_transition",
        hint=f"only {allowed} bookings can be {action}; get the booking to see its state",
        extra={"status": status_of(b)},
    )


def late_fee(b: Booking, service: Service, by: str, now: dt.datetime) -> tuple[MoneyOut | None, str | None]:
    if by != "client" or service.cancel_notice_minutes <= 0:
        return None, None
    deadline = b.start_at - dt.timedelta(minutes=service.cancel_notice_minutes)
    hours = service.cancel_notice_minutes / 60
    if now <= deadline:
        return None, f"free cancellation until {iso(deadline)} ({hours:g} h before the start)"
    fee = money(service.late_cancel_fee, b.currency or service.currency)
    note = f"late cancellation: less than {hours:g} h before the start"
    return fee, (note + (f"; a fee of {fee.amount} {fee.currency} applies" if fee else "; no fee is set"))
