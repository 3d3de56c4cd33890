"""registry: each built-in entry records the package version that wrote it

Revision ID: registry_0002
Revises: registry_0001
Create Date: 2026-12-06 04:00:00.000000

During a rolling deploy two versions start against one database; the start-up sync of the
older one must not downgrade (or retire) what the newer one wrote. NULL marks entries written
before this column existed: any version may rewrite them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0002"
down_revision: str | Sequence[str] | None = "registry_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("components", sa.Column("written_by", sa.Text(), nullable=True), schema="registry")


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
