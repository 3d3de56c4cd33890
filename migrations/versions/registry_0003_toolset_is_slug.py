"""registry: a component's toolset, when it has one, is its slug

Revision ID: registry_0003
Revises: registry_0002
Create Date: 2026-12-07 14:30:00.000000

The installation gate answers tools (by toolset) and actions (by component slug) from one list,
the toolsets `platform.resolve_context` reads with the context's binding: exact only while a
component's toolset is its own slug, as the start-up sync writes every built-in one (peers have
none). The constraint makes that a rule rather than a habit.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "registry_0003"
down_revision: str | Sequence[str] | None = "registry_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_check_constraint(
        op.f("ck_components_toolset_is_slug"),
        "components",
        "toolset IS NULL OR toolset = slug",
        schema="registry",
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
