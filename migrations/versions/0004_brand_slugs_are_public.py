"""platform: a brand's slug names its public site (/site/{brand}), so it is unique platform-wide

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 08:00:00.000000

Like person and org slugs, which name booking pages. Two contexts that picked the same brand
slug before this cannot both keep it: the upgrade stops with the duplicates named (none exist
before public sites ship).
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    clash = op.get_bind().execute(
        text("SELECT slug FROM platform.brands GROUP BY slug HAVING count(*) > 1 ORDER BY slug")
    )
    taken = [row[0] for row in clash]
    if taken:
        raise RuntimeError(
            "brand slugs used by more than one context: " + ", ".join(taken) + "; rename all but one "
            "(PATCH /v1/brands/{id}) and run `atlilith migrate` again"
        )
    op.drop_index("uq_brands_tenant_id_slug", table_name="brands", schema="platform")
    op.create_index("uq_brands_slug", "brands", ["slug"], unique=True, schema="platform")


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
