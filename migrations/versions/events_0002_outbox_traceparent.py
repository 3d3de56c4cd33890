"""events: the emitting span's traceparent on each outbox row

An event's handlers run later, in another process or on Inngest; to read as one trace with the
request that emitted the event, their spans need its span context, stored beside the row as a
W3C `traceparent`. Nullable: rows written before keep their `trace_id` and start a trace of it.

Revision ID: events_0002
Revises: events_0001
Create Date: 2026-12-06 10:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "events_0002"
down_revision: str | Sequence[str] | None = "events_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("traceparent", sa.Text()), schema="platform")


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
