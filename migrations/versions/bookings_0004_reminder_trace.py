"""bookings: a booking keeps the trace that confirmed (or moved) it, for its reminder

Revision ID: bookings_0004
Revises: bookings_0003
Create Date: 2026-12-06 11:10:00.000000

The reminder falls due hours or days after the confirm, from a scheduled sweep: without the
confirming span's `traceparent` stored on the booking, the reminder's handler would start a
trace of its own and the booking's story would read as two.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bookings_0004"
down_revision: str | Sequence[str] | None = "bookings_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("bookings", sa.Column("traceparent", sa.Text(), nullable=True), schema="bookings")


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
