"""platform: ownership of an org is offered, and moves only when the new owner accepts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 23:50:00.000000

An owner could add anyone as a member (no consent asked) and then hand them the org, which its
owner can neither leave nor be removed from. A transfer is now an offer kept on the org
(`offered_owner_id`, `offered_at`): the member it names accepts (the swap), declines, or the
owner withdraws it. Removing that member, or the person, ends the offer.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE platform.orgs"
        " ADD COLUMN offered_owner_id uuid"
        " CONSTRAINT fk_orgs_offered_owner_id_persons REFERENCES platform.persons (id) ON DELETE SET NULL,"
        " ADD COLUMN offered_at timestamptz"
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
