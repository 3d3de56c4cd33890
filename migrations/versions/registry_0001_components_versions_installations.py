"""registry: components (built-in and peer), their versions, installations per context

Revision ID: registry_0001
Revises:
Create Date: 2026-12-04 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import SYSTEM, enable_rls, enable_tenant_rls

revision: str = "registry_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("registry",)
depends_on: str | Sequence[str] | None = "0001"

SEARCH_EXPRESSION = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A')"
    " || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'B')"
    " || setweight(to_tsvector('english'::regconfig, coalesce(search_text, '')), 'C')"
)


def _now() -> sa.TextClause:
    return sa.text("now()")


def _jsonb(name: str, default: str) -> sa.Column[object]:
    return sa.Column(
        name, postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text(default), nullable=False
    )


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS registry")
    # Trigram similarity finds components by typo or prefix.
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "components",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("availability", sa.Text(), server_default="install", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("toolset", sa.Text(), nullable=True),
        _jsonb("actions", "'[]'::jsonb"),
        _jsonb("tools", "'[]'::jsonb"),
        _jsonb("scopes", "'[]'::jsonb"),
        sa.Column("skill_name", sa.Text(), nullable=True),
        sa.Column("skill_text", sa.Text(), nullable=True),
        sa.Column("base_url", sa.Text(), nullable=True),
        sa.Column("health_url", sa.Text(), nullable=True),
        sa.Column("tools_hash", sa.Text(), nullable=False),
        sa.Column("search_text", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "search", postgresql.TSVECTOR(), sa.Computed(SEARCH_EXPRESSION, persisted=True), nullable=False
        ),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("kind IN ('builtin', 'peer')", name=op.f("ck_components_kind")),
        sa.CheckConstraint(
            "availability IN ('install', 'always', 'platform')", name=op.f("ck_components_availability")
        ),
        sa.CheckConstraint(
            "kind = 'builtin' OR base_url IS NOT NULL", name=op.f("ck_components_peer_has_url")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_components")),
        schema="registry",
    )
    op.create_index("uq_components_slug", "components", ["slug"], unique=True, schema="registry")
    op.create_index(
        "ix_components_search",
        "components",
        ["search"],
        unique=False,
        schema="registry",
        postgresql_using="gin",
    )
    op.create_index(
        "ix_components_name_trgm",
        "components",
        ["name"],
        unique=False,
        schema="registry",
        postgresql_using="gin",
        postgresql_ops={"name": "gin_trgm_ops"},
    )

    op.create_table(
        "component_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("component_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("tools_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["registry.components.id"],
            name=op.f("fk_component_versions_component_id_components"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_component_versions")),
        schema="registry",
    )
    op.create_index(
        "uq_component_versions_component_id_version_tools_hash",
        "component_versions",
        ["component_id", "version", "tools_hash"],
        unique=True,
        schema="registry",
    )
    op.create_index(
        "ix_component_versions_component_id_created_at",
        "component_versions",
        ["component_id", "created_at"],
        unique=False,
        schema="registry",
    )

    op.create_table(
        "installations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("component_id", sa.Uuid(), nullable=False),
        _jsonb("config", "'{}'::jsonb"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["component_id"],
            ["registry.components.id"],
            name=op.f("fk_installations_component_id_components"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name="fk_installations_org_id_orgs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name="fk_installations_person_id_persons",
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installations")),
        schema="registry",
    )
    op.create_index(
        "uq_installations_tenant_id_component_id",
        "installations",
        ["tenant_id", "component_id"],
        unique=True,
        schema="registry",
    )
    op.create_index(
        "ix_installations_component_id", "installations", ["component_id"], unique=False, schema="registry"
    )

    enable_tenant_rls("registry.installations")
    # Any bound context may read the catalogue; only the platform (sync, admins) writes it.
    for table in ("registry.components", "registry.component_versions"):
        enable_rls(
            table,
            {
                "catalogue_select": (
                    "SELECT",
                    f"{SYSTEM} OR (SELECT platform.ctx_person_id()) IS NOT NULL",
                    None,
                ),
                "catalogue_system": ("ALL", SYSTEM, SYSTEM),
            },
        )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
