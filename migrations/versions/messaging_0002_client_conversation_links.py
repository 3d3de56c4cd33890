"""messaging: the client's conversation link of a portal thread (issued, revoked, re-issued)

Revision ID: messaging_0002
Revises: messaging_0001
Create Date: 2026-12-06 08:00:00.000000

The link itself is derived (an HMAC over the thread id and the generation), so only its state
is stored: the generation of the current link and whether it still opens the conversation.
Revoking turns it off; the next outbound portal message issues generation + 1.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "messaging_0002"
down_revision: str | Sequence[str] | None = "messaging_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "threads",
        sa.Column("client_link_generation", sa.Integer(), server_default=sa.text("0"), nullable=False),
        schema="messaging",
    )
    op.add_column(
        "threads",
        sa.Column("client_link_active", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        schema="messaging",
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
