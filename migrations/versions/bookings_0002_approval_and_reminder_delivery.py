"""bookings: approval-required services; where a booking's reminder went and how it fared

Revision ID: bookings_0002
Revises: bookings_0001
Create Date: 2026-12-06 08:00:00.000000

Public booking pages turn a visitor's booking of such a service into a request (the slot stays
blocked until the provider confirms or declines it) instead of a confirmed booking.

A reminder goes out as a message to the client (core.bookings.reminders); the booking keeps the
message's id, the channel and its delivery state (queued, sent, failed, or skipped).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bookings_0002"
down_revision: str | Sequence[str] | None = "bookings_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "services",
        sa.Column("approval_required", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="bookings",
    )
    for column in (
        sa.Column("reminder_message_id", sa.Uuid(), nullable=True),
        sa.Column("reminder_channel", sa.Text(), nullable=True),
        sa.Column("reminder_status", sa.Text(), nullable=True),
        sa.Column("reminder_error", sa.Text(), nullable=True),
    ):
        op.add_column("bookings", column, schema="bookings")
    op.create_check_constraint(
        op.f("ck_bookings_reminder_status"),
        "bookings",
        "reminder_status IS NULL OR reminder_status IN ('queued', 'sent', 'failed', 'skipped')",
        schema="bookings",
    )
    op.create_index(
        "ix_bookings_reminder_message_id",
        "bookings",
        ["reminder_message_id"],
        schema="bookings",
        postgresql_where=sa.text("reminder_message_id IS NOT NULL"),
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
