"""clients carry their polyseme person id

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing clients get their id from the identity/dedupe-clients action (the key that
    # derives it is not the database's to know).
    op.add_column("clients", sa.Column("polyseme_person_id", sa.Uuid(), nullable=True), schema="platform")
    op.create_index(
        "ix_clients_tenant_id_polyseme_person_id",
        "clients",
        ["tenant_id", "polyseme_person_id"],
        unique=False,
        schema="platform",
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
