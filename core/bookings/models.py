"""Tables of the `bookings` schema. Row-level security and the SQL functions are in the migration.

The hard guarantee lives in `ex_bookings_no_overlap`: one provider (a person) can never hold two
active bookings whose buffered times overlap, whatever context (personal or any org) they were
made in, whatever door wrote them, under any concurrency.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    ForeignKey,
    Index,
    Numeric,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSTZRANGE, ExcludeConstraint, Range
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Timestamped, created_at, one_of, sql_in, uuid_pk
from core.tenancy.models import TenantOwned

SCHEMA = "bookings"
# States that occupy the provider's time. An expired hold is still 'held' until swept or until
# a write for the same provider expires it first (see bookings.expire_stale_holds).
ACTIVE_STATES = ("held", "requested", "confirmed")
STATES = (*ACTIVE_STATES, "declined", "cancelled", "expired", "completed", "no_show")
LOCATION_KINDS = ("in_person", "phone", "video", "client_address", "other")
ASSIGNMENTS = ("specific", "round_robin")
NO_OVERLAP = "ex_bookings_no_overlap"


class Service(TenantOwned, Timestamped, Base):
    """A bookable offering of a context."""

    __tablename__ = "services"
    __table_args__ = (
        Index("uq_services_tenant_id_name", "tenant_id", text("lower(name)"), unique=True),
        Index("ix_services_tenant_id_created_at", "tenant_id", "created_at", "id"),
        CheckConstraint("duration_minutes BETWEEN 5 AND 1440", name="duration"),
        CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 1440 AND buffer_after_minutes BETWEEN 0 AND 1440",
            name="buffers",
        ),
        CheckConstraint("min_notice_minutes BETWEEN 0 AND 525600", name="notice"),
        CheckConstraint("max_advance_days BETWEEN 1 AND 730", name="advance"),
        CheckConstraint(
            "slot_interval_minutes IS NULL OR slot_interval_minutes BETWEEN 5 AND 1440", name="step"
        ),
        CheckConstraint("(price_amount IS NULL) = (currency IS NULL)", name="price"),
        CheckConstraint("price_amount IS NULL OR price_amount >= 0", name="price_positive"),
        one_of("location_kind", LOCATION_KINDS),
        one_of("assignment", ASSIGNMENTS),
        CheckConstraint("cancel_notice_minutes >= 0", name="cancel_notice"),
        CheckConstraint("late_cancel_fee IS NULL OR late_cancel_fee >= 0", name="late_fee"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    duration_minutes: Mapped[int]
    buffer_before_minutes: Mapped[int] = mapped_column(server_default=text("0"))
    buffer_after_minutes: Mapped[int] = mapped_column(server_default=text("0"))
    min_notice_minutes: Mapped[int] = mapped_column(server_default=text("0"))
    max_advance_days: Mapped[int] = mapped_column(server_default=text("60"))
    slot_interval_minutes: Mapped[int | None]
    price_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(Text)
    location_kind: Mapped[str] = mapped_column(Text, server_default="in_person")
    location: Mapped[str | None] = mapped_column(Text)
    assignment: Mapped[str] = mapped_column(Text, server_default="specific")
    cancel_notice_minutes: Mapped[int] = mapped_column(server_default=text("0"))
    late_cancel_fee: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    active: Mapped[bool] = mapped_column(server_default=text("true"))
    approval_required: Mapped[bool] = mapped_column(server_default=text("false"))


class ServiceProvider(TenantOwned, Base):
    """Who may deliver a service; `last_assigned_at` makes round robin fair over time."""

    __tablename__ = "service_providers"
    __table_args__ = (Index("ix_service_providers_provider_id", "provider_id"), {"schema": SCHEMA})

    service_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("bookings.services.id", ondelete="CASCADE"), primary_key=True
    )
    provider_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="CASCADE"), primary_key=True
    )
    last_assigned_at: Mapped[dt.datetime | None]
    assigned_count: Mapped[int] = mapped_column(server_default=text("0"))
    created_at: Mapped[dt.datetime] = created_at()


class Schedule(TenantOwned, Timestamped, Base):
    """A provider's working hours in one context: weekly rules and date overrides, in an IANA zone."""

    __tablename__ = "schedules"
    __table_args__ = (
        Index("uq_schedules_tenant_id_provider_id", "tenant_id", "provider_id", unique=True),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="CASCADE"))
    time_zone: Mapped[str] = mapped_column(Text)
    weekly: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    overrides: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))


class Booking(TenantOwned, Timestamped, Base):
    __tablename__ = "bookings"
    __table_args__ = (
        one_of("status", STATES),
        CheckConstraint("end_at > start_at", name="times"),
        CheckConstraint("status <> 'held' OR hold_expires_at IS NOT NULL", name="hold_expiry"),
        one_of("cancelled_by", ("provider", "client"), nullable=True),
        CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 1440 AND buffer_after_minutes BETWEEN 0 AND 1440",
            name="buffers",
        ),
        # The guarantee: per provider, across every tenant, active bookings never overlap
        # (buffers included). btree_gist gives uuid its `=` operator class for GiST.
        ExcludeConstraint(
            ("provider_id", "="),
            ("blocked", "&&"),
            name=NO_OVERLAP,
            using="gist",
            where=text(sql_in("status", ACTIVE_STATES)),
        ),
        Index("ix_bookings_tenant_id_start_at", "tenant_id", "start_at", "id"),
        Index("ix_bookings_provider_id_start_at", "provider_id", "start_at"),
        Index("ix_bookings_client_id", "client_id"),
        Index("ix_bookings_service_id", "service_id"),
        Index("ix_bookings_holds", "hold_expires_at", postgresql_where=text("status = 'held'")),
        Index(
            "ix_bookings_reminders",
            "start_at",
            postgresql_where=text("status = 'confirmed' AND reminder_sent_at IS NULL"),
        ),
        Index(
            "ix_bookings_reminder_message_id",
            "reminder_message_id",
            postgresql_where=text("reminder_message_id IS NOT NULL"),
        ),
        one_of("reminder_status", ("queued", "sent", "failed", "skipped"), nullable=True),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    service_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bookings.services.id"))
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="RESTRICT"))
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("platform.clients.id"))
    status: Mapped[str] = mapped_column(Text)
    start_at: Mapped[dt.datetime]
    end_at: Mapped[dt.datetime]
    buffer_before_minutes: Mapped[int] = mapped_column(server_default=text("0"))
    buffer_after_minutes: Mapped[int] = mapped_column(server_default=text("0"))
    # The provider's time this booking occupies: [start - buffer before, end + buffer after).
    blocked: Mapped[Range[dt.datetime]] = mapped_column(
        TSTZRANGE,
        Computed(
            "bookings.blocked_range(start_at, end_at, buffer_before_minutes, buffer_after_minutes)",
            persisted=True,
        ),
    )
    hold_expires_at: Mapped[dt.datetime | None]
    client_time_zone: Mapped[str | None] = mapped_column(Text)
    price_amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    currency: Mapped[str | None] = mapped_column(Text)
    location_kind: Mapped[str] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)  # the provider's
    client_note: Mapped[str | None] = mapped_column(Text)  # the client's: untrusted
    decline_reason: Mapped[str | None] = mapped_column(Text)
    cancelled_by: Mapped[str | None] = mapped_column(Text)
    cancel_reason: Mapped[str | None] = mapped_column(Text)
    cancellation_fee: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))
    cancelled_at: Mapped[dt.datetime | None]
    reschedules: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    # Manage links carry this; revoking them counts it up (core.bookings.manage).
    manage_link_generation: Mapped[int] = mapped_column(server_default=text("0"))
    reminder_sent_at: Mapped[dt.datetime | None]  # when the reminder fell due (and was claimed)
    # The reminder's message (core.bookings.reminders) and how its delivery went.
    reminder_message_id: Mapped[uuid.UUID | None]
    reminder_channel: Mapped[str | None] = mapped_column(Text)
    reminder_status: Mapped[str | None] = mapped_column(Text)
    reminder_error: Mapped[str | None] = mapped_column(Text)
    # The span that confirmed or last moved the booking (W3C traceparent): its reminder, emitted
    # later by a sweep, continues that trace.
    traceparent: Mapped[str | None] = mapped_column(Text)
    confirmed_at: Mapped[dt.datetime | None]


class CalendarFeed(Base):
    """A private iCalendar feed of one provider's bookings (all their contexts); the token is
    shown once and stored hashed; revoking it makes the URL 404."""

    __tablename__ = "calendar_feeds"
    __table_args__ = (
        Index("uq_calendar_feeds_token_hash", "token_hash", unique=True),
        Index("ix_calendar_feeds_person_id", "person_id"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    person_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.persons.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(Text)
    token_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at()
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
