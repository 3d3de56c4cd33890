"""platform admin: the audit log, and why a person is suspended

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import SYSTEM, enable_rls, execute_script

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADMIN = "(SELECT platform.ctx_is_platform_admin())"


def upgrade() -> None:
    op.add_column(
        "persons", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True), schema="platform"
    )
    op.add_column("persons", sa.Column("suspension_reason", sa.Text(), nullable=True), schema="platform")
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False
        ),
        sa.Column("actor_kind", sa.Text(), nullable=False),
        sa.Column("actor_person_id", sa.Uuid(), nullable=True),
        sa.Column("actor_label", sa.Text(), nullable=False),
        sa.Column("credential", sa.Text(), nullable=True),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("target_type", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Text(), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("trace_id", sa.Text(), nullable=False),
        sa.Column("context_org_id", sa.Uuid(), nullable=True),
        sa.Column("context", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        schema="platform",
    )
    op.create_index("ix_audit_log_at_id", "audit_log", ["at", "id"], unique=False, schema="platform")
    op.create_index(
        "ix_audit_log_actor_person_id_at",
        "audit_log",
        ["actor_person_id", "at"],
        unique=False,
        schema="platform",
    )
    op.create_index("ix_audit_log_action_at", "audit_log", ["action", "at"], unique=False, schema="platform")
    op.create_index(
        "ix_audit_log_target_type_target_id_at",
        "audit_log",
        ["target_type", "target_id", "at"],
        unique=False,
        schema="platform",
    )
    execute_script(ADMIN_FUNCTION)
    # Readable by the platform (system mode) and by platform admins; written by them; no UPDATE
    # or DELETE policy at all, so for the app role the log is append-only.
    enable_rls(
        "platform.audit_log",
        {
            "audit_select": ("SELECT", f"{SYSTEM} OR {ADMIN}", None),
            "audit_insert": ("INSERT", None, f"{SYSTEM} OR {ADMIN}"),
        },
    )


ADMIN_FUNCTION = """
-- Whether the acting person (mode 'user') is an active platform admin, read from the row now:
-- a token never carries it.
CREATE FUNCTION platform.ctx_is_platform_admin() RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(current_setting('app.mode', true), '') = 'user' AND EXISTS (
    SELECT 1 FROM platform.persons p
     WHERE p.id = platform.ctx_person_id() AND p.is_platform_admin AND p.status = 'active')
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
