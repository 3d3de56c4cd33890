"""bookings: manage links can be revoked (a generation number each link carries)

Revision ID: bookings_0003
Revises: bookings_0002
Create Date: 2026-12-06 08:30:00.000000

A manage link is a signed token; revoking "every link given so far" counts the booking's
generation up, and a token of an older generation no longer opens the booking.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bookings_0003"
down_revision: str | Sequence[str] | None = "bookings_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "bookings",
        sa.Column("manage_link_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="bookings",
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
