"""events: leases on claimed deliveries, outbox batches and schedule runs

A claim used to be a row lock held for the whole handler transaction: a frozen process kept its
deliveries for ever and a crash never counted its attempt. Now a claim commits who holds the row
(`claimed_by`), a token for this claim (`claim_token`) and until when (`lease_until`), with the
attempt already counted; completing checks the token, so a process whose lease ran out cannot
commit over the one that took the row. Schedule runs record who ran them and how it ended.

Revision ID: events_0001
Revises:
Create Date: 2026-12-06 03:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import Uuid

revision: str = "events_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("events",)
depends_on: str | Sequence[str] | None = "0001"


def upgrade() -> None:
    for table in ("event_deliveries", "outbox"):
        op.add_column(table, sa.Column("claimed_by", sa.Text()), schema="platform")
        op.add_column(table, sa.Column("claim_token", Uuid(as_uuid=True)), schema="platform")
        op.add_column(table, sa.Column("lease_until", sa.DateTime(timezone=True)), schema="platform")
    op.add_column("schedule_runs", sa.Column("claimed_by", sa.Text()), schema="platform")
    op.add_column("schedule_runs", sa.Column("finished_at", sa.DateTime(timezone=True)), schema="platform")
    op.add_column("schedule_runs", sa.Column("last_error", sa.Text()), schema="platform")
    # Dead letters are listed (admin) and re-driven by handler.
    op.create_index(
        "ix_event_deliveries_dead",
        "event_deliveries",
        ["handler", "updated_at"],
        schema="platform",
        postgresql_where=sa.text("status = 'dead'"),
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
