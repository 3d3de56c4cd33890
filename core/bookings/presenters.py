"""Bookings rows as answers: the booking, money, times, calendar entries and outbox events."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from core.bookings import calendar, links
from core.bookings.models import Booking
from core.bookings.schemas import (
    BookingOut,
    CancellationOut,
    ClientRef,
    ManageLinkOut,
    MoneyOut,
    ReminderOut,
    RescheduleOut,
    ServiceRef,
)
from core.money import in_currency
from core.presenting import context_kind, from_row
from core.tenancy.schemas import PersonRef
from core.uow import UnitOfWork
from core.utilities import utcnow

if TYPE_CHECKING:
    from sqlalchemy import Row

    from core.bookings.queries import BookingRow

    # A booking as the ORM loads it, or as a statement returning the table's columns hands it
    # back (a hold's row: no ORM object to build for an answer made once).
    BookingRecord = Booking | Row[Any]


def money(amount: Decimal | None, currency: str | None) -> MoneyOut | None:
    if amount is None or not currency:
        return None
    return MoneyOut(amount=in_currency(amount, currency), currency=currency)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


class BookingFacts(Protocol):
    """What a booking's event says of it: a `Booking`, or a booking about to be written (a hold
    writes its event in the statement that writes the booking)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def service_id(self) -> uuid.UUID: ...
    @property
    def provider_id(self) -> uuid.UUID: ...
    @property
    def client_id(self) -> uuid.UUID | None: ...
    @property
    def status(self) -> str: ...
    @property
    def person_id(self) -> uuid.UUID: ...
    @property
    def org_id(self) -> uuid.UUID | None: ...
    @property
    def start_at(self) -> dt.datetime: ...
    @property
    def end_at(self) -> dt.datetime: ...
    @property
    def price_amount(self) -> Decimal | None: ...
    @property
    def currency(self) -> str | None: ...


def _event(b: BookingFacts, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "booking_id": str(b.id),
        "service_id": str(b.service_id),
        "provider_id": str(b.provider_id),
        "client_id": str(b.client_id) if b.client_id else None,
        "status": b.status,
        "context": context_kind(b.org_id),
        "start_at": iso(b.start_at),
        "end_at": iso(b.end_at),
        # Analytics reports revenue from these: the price agreed for this booking.
        "price_amount": str(in_currency(b.price_amount, b.currency))
        if b.price_amount is not None and b.currency
        else None,
        "currency": b.currency,
    }
    data.update(extra)
    return data


def emit_event(
    uow: UnitOfWork, action: str, b: Booking, *, traceparent: str | None = None, **extra: Any
) -> None:
    # Explicit owner: the manage link and the sweeps act outside a person's context.
    uow.emit(
        f"bookings/booking.{action}",
        _event(b, **extra),
        person_id=b.person_id,
        org_id=b.org_id,
        traceparent=traceparent,
    )


def event_row(uow: UnitOfWork, action: str, b: BookingFacts, **extra: Any) -> dict[str, Any]:
    """The outbox row `emit_event` would queue, not queued: for a statement that writes it
    beside the booking (`core.uow.UnitOfWork.event_row`)."""
    return uow.event_row(
        f"bookings/booking.{action}", _event(b, **extra), person_id=b.person_id, org_id=b.org_id
    )


def status_of(b: BookingRecord, now: dt.datetime | None = None) -> str:
    if b.status == "held" and b.hold_expires_at is not None and b.hold_expires_at <= (now or utcnow()):
        return "expired"  # not swept yet, but it blocks nothing any more
    return b.status


def manage_link_out(uow: UnitOfWork, b: BookingRecord) -> ManageLinkOut:
    token, expires = links.issue(uow.db.settings, b.id, b.end_at, b.manage_link_generation)
    return ManageLinkOut(url=links.url(uow.db.settings, token), token=token, expires_at=expires)


def booking_out(
    b: BookingRecord,
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
            fee=money(b.cancellation_fee, b.currency),
        )
    return from_row(
        BookingOut,
        b,
        status=status_of(b),
        service=service,
        provider=provider,
        client=client,
        price=money(b.price_amount, b.currency),
        untrusted_client_note=b.client_note,
        cancellation=cancellation,
        reschedules=[RescheduleOut.model_validate(r) for r in b.reschedules],
        context=context_kind(b.org_id),
        manage=manage,
        reminder=_reminder(b),
    )


def _reminder(b: BookingRecord) -> ReminderOut | None:
    if b.reminder_status is None:
        return None
    return ReminderOut(
        status=b.reminder_status,
        channel=b.reminder_channel,
        message_id=b.reminder_message_id,
        due_at=b.reminder_sent_at,
        error=b.reminder_error,
    )


def _former(provider_id: uuid.UUID) -> PersonRef:
    return PersonRef(id=provider_id, slug="former-member", display_name="Former member")


def row_out(row: BookingRow, manage: ManageLinkOut | None = None) -> BookingOut:
    b, service_name, duration, slug, display_name, client = row
    provider = (
        PersonRef(id=b.provider_id, slug=slug, display_name=display_name) if slug else _former(b.provider_id)
    )
    return booking_out(
        b,
        ServiceRef(id=b.service_id, name=service_name, duration_minutes=duration),
        provider,
        ClientRef(id=client.id, name=client.name, email=client.email, phone=client.phone) if client else None,
        manage,
    )


def calendar_entry(b: Booking, service_name: str, who: str | None, for_client: bool) -> calendar.Entry:
    return calendar.Entry(
        booking_id=b.id,
        status=status_of(b),
        summary=f"{service_name} with {who}" if who else service_name,
        start_at=b.start_at,
        end_at=b.end_at,
        updated_at=b.updated_at,
        sequence=len(b.reschedules),
        location=b.location,
        description=None if for_client else (f"Notes: {b.notes}" if b.notes else None),
    )
