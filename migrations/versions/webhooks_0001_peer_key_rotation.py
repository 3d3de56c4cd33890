"""webhooks: several keys per peer (rotation with an overlap), for Standard Webhooks signatures

A peer had one secret (primary key peer_id). Now each key is a row of its own: the newest
signs, every active one verifies, and an old key stops at `retires_at` (set by a rotation's
grace, or at once when an admin retires it).

Revision ID: webhooks_0001
Revises:
Create Date: 2026-12-06 01:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "webhooks_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("webhooks",)
depends_on: str | Sequence[str] | None = "billing_0001"


def upgrade() -> None:
    op.add_column(
        "peer_secrets",
        sa.Column("id", sa.Uuid(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        schema="billing",
    )
    op.drop_constraint("pk_peer_secrets", "peer_secrets", schema="billing", type_="primary")
    op.create_primary_key("pk_peer_secrets", "peer_secrets", ["id"], schema="billing")
    op.alter_column("peer_secrets", "rotated_at", new_column_name="created_at", schema="billing")
    op.add_column(
        "peer_secrets", sa.Column("retires_at", sa.DateTime(timezone=True), nullable=True), schema="billing"
    )
    op.create_index("ix_peer_secrets_peer_id", "peer_secrets", ["peer_id", "created_at"], schema="billing")


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
