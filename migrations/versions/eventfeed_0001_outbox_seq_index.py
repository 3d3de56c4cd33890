"""eventfeed: an index on the outbox's seq for the live event stream

The stream (GET /v1/events/stream) asks each second for events after a position; without this
index every poll would scan the whole outbox.

Revision ID: eventfeed_0001
Revises:
Create Date: 2026-12-06 02:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "eventfeed_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("eventfeed",)
depends_on: str | Sequence[str] | None = "0001"


def upgrade() -> None:
    op.create_index("ix_outbox_seq", "outbox", ["seq"], unique=True, schema="platform")


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
