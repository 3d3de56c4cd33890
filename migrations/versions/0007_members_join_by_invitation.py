"""platform: a person joins an org only by accepting an invitation (or by creating it)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 01:40:00.000000

An owner or admin could add any person to their org by handle, with no consent asked: the
person found an org in their switcher, its tools in their agent's list, and their name on its
roster. Members now join only by accepting an invitation. The door for adding someone is gone
from the API and the tools, and row-level security no longer lets the org's context insert a
membership for another person: the only memberships a request may write are its own person
becoming owner of an org it created, or accepting an invitation that is pending for them.
"""

from collections.abc import Sequence

from alembic import op

from migrations.rls import PERSON, SYSTEM

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP POLICY members_insert ON platform.org_members")
    op.execute(
        "CREATE POLICY members_insert ON platform.org_members FOR INSERT WITH CHECK ("
        f"{SYSTEM}"
        f" OR (person_id = {PERSON} AND role = 'owner' AND platform.owns_org(org_id))"
        f" OR (person_id = {PERSON} AND platform.has_invitation(org_id, role)))"
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
