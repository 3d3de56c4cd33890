"""bookings: services, providers, schedules, bookings (no overlap per provider), calendar feeds

Revision ID: bookings_0001
Revises:
Create Date: 2026-11-22 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import PERSON, SYSTEM, enable_rls, enable_tenant_rls, execute_script

revision: str = "bookings_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("bookings",)
depends_on: str | Sequence[str] | None = "0001"

ACTIVE = "'held', 'requested', 'confirmed'"


def _tenant_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
    ]


def _tenant_fks(table: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=f"fk_{table}_org_id_orgs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["platform.persons.id"], name=f"fk_{table}_person_id_persons", ondelete="RESTRICT"
        ),
    ]


def _stamps() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS bookings")
    # `atlilith migrate` creates it; kept here so the migration stands on its own.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
    execute_script(RANGE_FUNCTION)
    op.create_table(
        "services",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_before_minutes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("buffer_after_minutes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("min_notice_minutes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("max_advance_days", sa.Integer(), server_default=sa.text("60"), nullable=False),
        sa.Column("slot_interval_minutes", sa.Integer(), nullable=True),
        sa.Column("price_amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("location_kind", sa.Text(), server_default="in_person", nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("assignment", sa.Text(), server_default="specific", nullable=False),
        sa.Column("cancel_notice_minutes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("late_cancel_fee", sa.Numeric(12, 2), nullable=True),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_stamps(),
        *_tenant_columns(),
        sa.CheckConstraint("duration_minutes BETWEEN 5 AND 1440", name=op.f("ck_services_duration")),
        sa.CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 1440 AND buffer_after_minutes BETWEEN 0 AND 1440",
            name=op.f("ck_services_buffers"),
        ),
        sa.CheckConstraint("min_notice_minutes BETWEEN 0 AND 525600", name=op.f("ck_services_notice")),
        sa.CheckConstraint("max_advance_days BETWEEN 1 AND 730", name=op.f("ck_services_advance")),
        sa.CheckConstraint(
            "slot_interval_minutes IS NULL OR slot_interval_minutes BETWEEN 5 AND 1440",
            name=op.f("ck_services_step"),
        ),
        sa.CheckConstraint("(price_amount IS NULL) = (currency IS NULL)", name=op.f("ck_services_price")),
        sa.CheckConstraint(
            "price_amount IS NULL OR price_amount >= 0", name=op.f("ck_services_price_positive")
        ),
        sa.CheckConstraint(
            "location_kind IN ('in_person', 'phone', 'video', 'client_address', 'other')",
            name=op.f("ck_services_location_kind"),
        ),
        sa.CheckConstraint("assignment IN ('specific', 'round_robin')", name=op.f("ck_services_assignment")),
        sa.CheckConstraint("cancel_notice_minutes >= 0", name=op.f("ck_services_cancel_notice")),
        sa.CheckConstraint(
            "late_cancel_fee IS NULL OR late_cancel_fee >= 0", name=op.f("ck_services_late_fee")
        ),
        *_tenant_fks("services"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        schema="bookings",
    )
    op.create_index(
        "uq_services_tenant_id_name",
        "services",
        ["tenant_id", sa.literal_column("lower(name)")],
        unique=True,
        schema="bookings",
    )
    op.create_index(
        "ix_services_tenant_id_created_at",
        "services",
        ["tenant_id", "created_at", "id"],
        unique=False,
        schema="bookings",
    )
    op.create_table(
        "service_providers",
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        *_tenant_columns(),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["bookings.services.id"],
            name=op.f("fk_service_providers_service_id_services"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["platform.persons.id"],
            name=op.f("fk_service_providers_provider_id_persons"),
            ondelete="CASCADE",
        ),
        *_tenant_fks("service_providers"),
        sa.PrimaryKeyConstraint("service_id", "provider_id", name=op.f("pk_service_providers")),
        schema="bookings",
    )
    op.create_index(
        "ix_service_providers_provider_id",
        "service_providers",
        ["provider_id"],
        unique=False,
        schema="bookings",
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("time_zone", sa.Text(), nullable=False),
        sa.Column(
            "weekly",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "overrides",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        *_stamps(),
        *_tenant_columns(),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["platform.persons.id"],
            name=op.f("fk_schedules_provider_id_persons"),
            ondelete="CASCADE",
        ),
        *_tenant_fks("schedules"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        schema="bookings",
    )
    op.create_index(
        "uq_schedules_tenant_id_provider_id",
        "schedules",
        ["tenant_id", "provider_id"],
        unique=True,
        schema="bookings",
    )
    op.create_table(
        "bookings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("service_id", sa.Uuid(), nullable=False),
        sa.Column("provider_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("buffer_before_minutes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("buffer_after_minutes", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "blocked",
            postgresql.TSTZRANGE(),
            sa.Computed(
                "bookings.blocked_range(start_at, end_at, buffer_before_minutes, buffer_after_minutes)",
                persisted=True,
            ),
            nullable=False,
        ),
        sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("client_time_zone", sa.Text(), nullable=True),
        sa.Column("price_amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("location_kind", sa.Text(), nullable=False),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("client_note", sa.Text(), nullable=True),
        sa.Column("decline_reason", sa.Text(), nullable=True),
        sa.Column("cancelled_by", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("cancellation_fee", sa.Numeric(12, 2), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "reschedules",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("reminder_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        *_stamps(),
        *_tenant_columns(),
        sa.CheckConstraint(
            "status IN ('held', 'requested', 'confirmed', 'declined', 'cancelled', 'expired', 'completed',"
            " 'no_show')",
            name=op.f("ck_bookings_status"),
        ),
        sa.CheckConstraint("end_at > start_at", name=op.f("ck_bookings_times")),
        sa.CheckConstraint(
            "status <> 'held' OR hold_expires_at IS NOT NULL", name=op.f("ck_bookings_hold_expiry")
        ),
        sa.CheckConstraint(
            "cancelled_by IS NULL OR cancelled_by IN ('provider', 'client')",
            name=op.f("ck_bookings_cancelled_by"),
        ),
        sa.CheckConstraint(
            "buffer_before_minutes BETWEEN 0 AND 1440 AND buffer_after_minutes BETWEEN 0 AND 1440",
            name=op.f("ck_bookings_buffers"),
        ),
        sa.ForeignKeyConstraint(
            ["service_id"], ["bookings.services.id"], name=op.f("fk_bookings_service_id_services")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["platform.persons.id"],
            name=op.f("fk_bookings_provider_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["platform.clients.id"], name=op.f("fk_bookings_client_id_clients")
        ),
        *_tenant_fks("bookings"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bookings")),
        postgresql.ExcludeConstraint(
            (sa.column("provider_id"), "="),
            (sa.column("blocked"), "&&"),
            name="ex_bookings_no_overlap",
            using="gist",
            where=sa.text(f"status IN ({ACTIVE})"),
        ),
        schema="bookings",
    )
    op.create_index(
        "ix_bookings_tenant_id_start_at", "bookings", ["tenant_id", "start_at", "id"], schema="bookings"
    )
    op.create_index(
        "ix_bookings_provider_id_start_at", "bookings", ["provider_id", "start_at"], schema="bookings"
    )
    op.create_index("ix_bookings_client_id", "bookings", ["client_id"], schema="bookings")
    op.create_index("ix_bookings_service_id", "bookings", ["service_id"], schema="bookings")
    op.create_index(
        "ix_bookings_holds",
        "bookings",
        ["hold_expires_at"],
        schema="bookings",
        postgresql_where=sa.text("status = 'held'"),
    )
    op.create_index(
        "ix_bookings_reminders",
        "bookings",
        ["start_at"],
        schema="bookings",
        postgresql_where=sa.text("status = 'confirmed' AND reminder_sent_at IS NULL"),
    )
    op.create_table(
        "calendar_feeds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_calendar_feeds_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_feeds")),
        schema="bookings",
    )
    op.create_index(
        "uq_calendar_feeds_token_hash", "calendar_feeds", ["token_hash"], unique=True, schema="bookings"
    )
    op.create_index("ix_calendar_feeds_person_id", "calendar_feeds", ["person_id"], schema="bookings")
    execute_script(PROVIDER_FUNCTIONS)
    for table in ("services", "service_providers", "schedules", "bookings"):
        enable_tenant_rls(f"bookings.{table}")
    own = f"{SYSTEM} OR person_id = {PERSON}"
    enable_rls("bookings.calendar_feeds", {"own_rows": ("ALL", own, own)})


RANGE_FUNCTION = """
-- Minutes-only intervals don't depend on the time zone, so this is truly immutable: it can feed
-- a stored generated column and the exclusion constraint's index.
CREATE FUNCTION bookings.blocked_range(p_start timestamptz, p_end timestamptz, p_before integer,
                                       p_after integer)
RETURNS tstzrange LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT tstzrange(p_start - make_interval(mins => p_before), p_end + make_interval(mins => p_after), '[)')
$$;
"""

PROVIDER_FUNCTIONS = """
-- May the acting context schedule this provider? Themself, or a live member of the org the
-- context acts in (ctx_org_id re-checks the caller's own membership).
CREATE FUNCTION bookings.may_schedule(p_provider uuid) RETURNS boolean LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT platform.ctx_is_system() OR p_provider = platform.ctx_person_id()
      OR EXISTS (SELECT 1 FROM platform.org_members m
                  WHERE m.org_id = platform.ctx_org_id() AND m.person_id = p_provider)
$$;

-- A provider's busy time across every context (one person, one calendar), as bare ranges:
-- what blocks a slot, never whose booking it is. Expired holds never block. `p_except`: a
-- booking being moved does not block its own new time.
CREATE FUNCTION bookings.provider_busy(p_provider uuid, p_from timestamptz, p_to timestamptz,
                                       p_except uuid DEFAULT NULL)
RETURNS TABLE (blocked_from timestamptz, blocked_until timestamptz) LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT lower(b.blocked), upper(b.blocked) FROM bookings.bookings b
   WHERE bookings.may_schedule(p_provider)
     AND b.provider_id = p_provider
     AND b.blocked && tstzrange(p_from, p_to, '[)')
     AND b.status IN ('held', 'requested', 'confirmed')
     AND NOT (b.status = 'held' AND b.hold_expires_at <= now())
     AND b.id IS DISTINCT FROM p_except
   ORDER BY 1
$$;

-- Holds past their TTL still sit in the exclusion constraint until their state changes: a write
-- for this provider expires the overlapping ones first (whichever context made them).
CREATE FUNCTION bookings.expire_stale_holds(p_provider uuid, p_from timestamptz, p_to timestamptz)
RETURNS integer LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  WITH gone AS (
    UPDATE bookings.bookings b SET status = 'expired', updated_at = now()
     WHERE bookings.may_schedule(p_provider)
       AND b.provider_id = p_provider AND b.status = 'held' AND b.hold_expires_at <= now()
       AND b.blocked && tstzrange(p_from, p_to, '[)')
    RETURNING 1)
  SELECT count(*)::integer FROM gone
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
