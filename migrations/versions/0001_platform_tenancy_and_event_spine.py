"""platform tenancy and event spine

Revision ID: 0001
Revises:
Create Date: 2026-11-22 05:10:23.319030
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import ORG, PERSON, SYSTEM, enable_rls, enable_tenant_rls, execute_script

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS platform")
    execute_script(CONTEXT_FUNCTIONS)
    op.create_table(
        "event_deliveries",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("handler", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "handler", name=op.f("pk_event_deliveries")),
        schema="platform",
    )
    op.create_index(
        "ix_event_deliveries_due",
        "event_deliveries",
        ["next_attempt_at"],
        unique=False,
        schema="platform",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("trace_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("relayed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        schema="platform",
    )
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"], unique=False, schema="platform")
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["seq"],
        unique=False,
        schema="platform",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "persons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("is_platform_admin", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_persons_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_persons")),
        schema="platform",
    )
    op.create_index(
        "uq_persons_email", "persons", [sa.literal_column("lower(email)")], unique=True, schema="platform"
    )
    op.create_index("uq_persons_slug", "persons", ["slug"], unique=True, schema="platform")
    op.create_table(
        "schedule_runs",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("name", "fire_at", name=op.f("pk_schedule_runs")),
        schema="platform",
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.Text(), nullable=True),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_auth_sessions_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
        schema="platform",
    )
    op.create_index(
        "ix_auth_sessions_person_id", "auth_sessions", ["person_id"], unique=False, schema="platform"
    )
    op.create_table(
        "orgs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("owner_role", sa.Text(), sa.Computed("'owner'::text", persisted=True), nullable=False),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["platform.persons.id"], name=op.f("fk_orgs_owner_id_persons"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orgs")),
        schema="platform",
    )
    op.create_index("ix_orgs_owner_id", "orgs", ["owner_id"], unique=False, schema="platform")
    op.create_index("uq_orgs_slug", "orgs", ["slug"], unique=True, schema="platform")
    op.create_table(
        "person_credentials",
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_person_credentials_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_person_credentials")),
        schema="platform",
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_api_keys_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_api_keys_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        schema="platform",
    )
    op.create_index("ix_api_keys_person_id", "api_keys", ["person_id"], unique=False, schema="platform")
    op.create_index("uq_api_keys_prefix", "api_keys", ["prefix"], unique=True, schema="platform")
    op.create_table(
        "brands",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "config",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_brands_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_brands_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_brands")),
        schema="platform",
    )
    op.create_index(
        "ix_brands_tenant_id_created_at",
        "brands",
        ["tenant_id", "created_at"],
        unique=False,
        schema="platform",
    )
    op.create_index(
        "uq_brands_tenant_id_slug", "brands", ["tenant_id", "slug"], unique=True, schema="platform"
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_clients_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_clients_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        schema="platform",
    )
    op.create_index(
        "ix_clients_tenant_id_created_at",
        "clients",
        ["tenant_id", "created_at", "id"],
        unique=False,
        schema="platform",
    )
    op.create_index(
        "ix_clients_tenant_id_phone", "clients", ["tenant_id", "phone"], unique=False, schema="platform"
    )
    op.create_index(
        "uq_clients_tenant_id_email",
        "clients",
        ["tenant_id", sa.literal_column("lower(email)")],
        unique=True,
        schema="platform",
        postgresql_where=sa.text("email IS NOT NULL"),
    )
    op.create_table(
        "invitations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("invitee_person_id", sa.Uuid(), nullable=True),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("invited_by", sa.Uuid(), nullable=True),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('admin', 'member')", name=op.f("ck_invitations_role")),
        sa.CheckConstraint(
            "status IN ('pending', 'accepted', 'declined', 'revoked', 'expired')",
            name=op.f("ck_invitations_status"),
        ),
        sa.CheckConstraint(
            "email IS NOT NULL OR invitee_person_id IS NOT NULL", name=op.f("ck_invitations_invitee")
        ),
        sa.ForeignKeyConstraint(
            ["invited_by"],
            ["platform.persons.id"],
            name=op.f("fk_invitations_invited_by_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["invitee_person_id"],
            ["platform.persons.id"],
            name=op.f("fk_invitations_invitee_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_invitations_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invitations")),
        schema="platform",
    )
    op.create_index(
        "ix_invitations_email",
        "invitations",
        [sa.literal_column("lower(email)")],
        unique=False,
        schema="platform",
    )
    op.create_index(
        "ix_invitations_invitee_person_id",
        "invitations",
        ["invitee_person_id"],
        unique=False,
        schema="platform",
    )
    op.create_index(
        "uq_invitations_pending_email",
        "invitations",
        ["org_id", sa.literal_column("lower(email)")],
        unique=True,
        schema="platform",
        postgresql_where=sa.text("status = 'pending' AND email IS NOT NULL"),
    )
    op.create_index(
        "uq_invitations_pending_person",
        "invitations",
        ["org_id", "invitee_person_id"],
        unique=True,
        schema="platform",
        postgresql_where=sa.text("status = 'pending' AND invitee_person_id IS NOT NULL"),
    )
    op.create_table(
        "org_members",
        sa.Column("org_id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("role IN ('owner', 'admin', 'member')", name=op.f("ck_org_members_role")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_org_members_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_org_members_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "person_id", name=op.f("pk_org_members")),
        sa.UniqueConstraint("org_id", "person_id", "role", name="uq_org_members_org_id_person_id_role"),
        schema="platform",
    )
    op.create_index("ix_org_members_person_id", "org_members", ["person_id"], unique=False, schema="platform")
    # orgs.owner_id must name the member holding the owner row: checked at commit, so an org and
    # its owner membership are inserted (or an ownership transfer done) in one transaction.
    op.create_foreign_key(
        "fk_auth_sessions_org_id_orgs",
        "auth_sessions",
        "orgs",
        ["org_id"],
        ["id"],
        source_schema="platform",
        referent_schema="platform",
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        "fk_orgs_owner_membership",
        "orgs",
        "org_members",
        ["id", "owner_id", "owner_role"],
        ["org_id", "person_id", "role"],
        source_schema="platform",
        referent_schema="platform",
        deferrable=True,
        initially="DEFERRED",
    )
    op.create_index(
        "uq_org_members_one_owner",
        "org_members",
        ["org_id"],
        unique=True,
        schema="platform",
        postgresql_where=sa.text("role = 'owner'"),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_refresh_tokens_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["platform.auth_sessions.id"],
            name=op.f("fk_refresh_tokens_session_id_auth_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        schema="platform",
    )
    op.create_index(
        "ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"], unique=False, schema="platform"
    )
    op.create_index(
        "uq_refresh_tokens_token_hash", "refresh_tokens", ["token_hash"], unique=True, schema="platform"
    )
    op.create_table(
        "brand_domains",
        sa.Column("domain", sa.Text(), nullable=False),
        sa.Column("brand_id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["brand_id"],
            ["platform.brands.id"],
            name=op.f("fk_brand_domains_brand_id_brands"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_brand_domains_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_brand_domains_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_brand_domains")),
        schema="platform",
    )
    op.create_index(
        "ix_brand_domains_brand_id", "brand_domains", ["brand_id"], unique=False, schema="platform"
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("operation", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_keys")),
        schema="platform",
    )
    op.create_index(
        "uq_idempotency_keys_person_id_key",
        "idempotency_keys",
        ["person_id", "key"],
        unique=True,
        schema="platform",
    )
    op.create_index(
        "ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"], unique=False, schema="platform"
    )
    execute_script(GUARD_FUNCTIONS)
    execute_script(RESOLVE_CONTEXT)
    execute_script(OUTBOX_NOTIFY)
    _row_level_security()


def _row_level_security() -> None:
    for table in ("platform.brands", "platform.brand_domains", "platform.clients"):
        enable_tenant_rls(table)
    own = f"{SYSTEM} OR person_id = {PERSON}"
    for table in (
        "platform.person_credentials",
        "platform.auth_sessions",
        "platform.refresh_tokens",
        "platform.api_keys",
        "platform.idempotency_keys",
    ):
        enable_rls(table, {"own_rows": ("ALL", own, own)})
    enable_rls(
        "platform.persons",
        {
            # yourself, and the members of the org you are acting in
            # yourself; people you share an org with; who invited you; whom your org invited
            "persons_select": (
                "SELECT",
                f"{SYSTEM} OR id = {PERSON} OR id IN (SELECT platform.co_member_ids())"
                f" OR id IN (SELECT i.invited_by FROM platform.invitations i WHERE i.invitee_person_id = {PERSON})"
                f" OR id IN (SELECT i.invitee_person_id FROM platform.invitations i WHERE i.org_id = {ORG})",
                None,
            ),
            "persons_insert": ("INSERT", None, SYSTEM),
            "persons_update": ("UPDATE", f"{SYSTEM} OR id = {PERSON}", f"{SYSTEM} OR id = {PERSON}"),
            "persons_delete": ("DELETE", SYSTEM, None),
        },
    )
    enable_rls(
        "platform.orgs",
        {
            # every org you belong to is listed; its data needs its context (ORG)
            # every org you belong to (or are invited to) is listed; its data needs its context
            "orgs_select": (
                "SELECT",
                f"{SYSTEM} OR owner_id = {PERSON}"
                f" OR id IN (SELECT m.org_id FROM platform.org_members m WHERE m.person_id = {PERSON})"
                f" OR id IN (SELECT i.org_id FROM platform.invitations i WHERE i.invitee_person_id = {PERSON})",
                None,
            ),
            "orgs_insert": ("INSERT", None, f"{SYSTEM} OR owner_id = {PERSON}"),
            "orgs_update": ("UPDATE", f"{SYSTEM} OR id = {ORG}", f"{SYSTEM} OR id = {ORG}"),
            "orgs_delete": ("DELETE", f"{SYSTEM} OR id = {ORG}", None),
        },
    )
    enable_rls(
        "platform.org_members",
        {
            "members_select": ("SELECT", f"{SYSTEM} OR person_id = {PERSON} OR org_id = {ORG}", None),
            # in the org's context; or the creator becoming owner; or an invitee accepting
            "members_insert": (
                "INSERT",
                None,
                f"{SYSTEM} OR org_id = {ORG}"
                f" OR (person_id = {PERSON} AND role = 'owner' AND platform.owns_org(org_id))"
                f" OR (person_id = {PERSON} AND platform.has_invitation(org_id, role))",
            ),
            "members_update": ("UPDATE", f"{SYSTEM} OR org_id = {ORG}", f"{SYSTEM} OR org_id = {ORG}"),
            "members_delete": ("DELETE", f"{SYSTEM} OR org_id = {ORG}", None),
        },
    )
    enable_rls(
        "platform.invitations",
        {
            "invitations_select": (
                "SELECT",
                f"{SYSTEM} OR org_id = {ORG} OR invitee_person_id = {PERSON}",
                None,
            ),
            "invitations_insert": ("INSERT", None, f"{SYSTEM} OR org_id = {ORG}"),
            "invitations_update": (
                "UPDATE",
                f"{SYSTEM} OR org_id = {ORG} OR invitee_person_id = {PERSON}",
                f"{SYSTEM} OR org_id = {ORG} OR invitee_person_id = {PERSON}",
            ),
            "invitations_delete": ("DELETE", f"{SYSTEM} OR org_id = {ORG}", None),
        },
    )
    # Any context may emit events; only the relay (system) reads and moves them.
    enable_rls(
        "platform.outbox",
        {
            "outbox_insert": ("INSERT", None, "true"),
            "outbox_system": ("ALL", SYSTEM, SYSTEM),
        },
    )
    for table in ("platform.event_deliveries", "platform.schedule_runs"):
        enable_rls(table, {"system_only": ("ALL", SYSTEM, SYSTEM)})


CONTEXT_FUNCTIONS = """
CREATE FUNCTION platform.ctx_person_id() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN coalesce(current_setting('app.mode', true), '') IN ('user', 'service', 'system')
              THEN nullif(current_setting('app.person_id', true), '')::uuid END
$$;

CREATE FUNCTION platform.ctx_is_system() RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT coalesce(current_setting('app.mode', true), '') = 'system'
$$;
"""

GUARD_FUNCTIONS = """
-- The org whose rows this transaction may see. For a person (mode 'user') the membership is
-- re-checked here, so a context that wall 1 got wrong still shows nothing. Handlers and jobs
-- (mode 'service') are trusted with the org their event names.
CREATE FUNCTION platform.ctx_org_id() RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN coalesce(current_setting('app.org_id', true), '') = '' THEN NULL
    WHEN current_setting('app.mode', true) IN ('service', 'system')
      THEN nullif(current_setting('app.org_id', true), '')::uuid
    WHEN current_setting('app.mode', true) = 'user' THEN (
      -- nullif: the scan key may be computed even when an earlier branch was taken
      SELECT m.org_id FROM platform.org_members m
       WHERE m.org_id = nullif(current_setting('app.org_id', true), '')::uuid
         AND m.person_id = platform.ctx_person_id())
  END
$$;

CREATE FUNCTION platform.ctx_tenant_id() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN coalesce(current_setting('app.org_id', true), '') = ''
              THEN platform.ctx_person_id() ELSE platform.ctx_org_id() END
$$;

CREATE FUNCTION platform.owns_org(p_org uuid) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM platform.orgs o WHERE o.id = p_org AND o.owner_id = platform.ctx_person_id())
$$;

CREATE FUNCTION platform.has_invitation(p_org uuid, p_role text) RETURNS boolean LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT 1 FROM platform.invitations i
                  WHERE i.org_id = p_org AND i.role = p_role AND i.status = 'pending'
                    AND i.expires_at > now() AND i.invitee_person_id = platform.ctx_person_id())
$$;

-- Everyone who shares an org with the acting person (for profile visibility).
CREATE FUNCTION platform.co_member_ids() RETURNS SETOF uuid LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT DISTINCT m2.person_id FROM platform.org_members m1
    JOIN platform.org_members m2 ON m2.org_id = m1.org_id
   WHERE m1.person_id = platform.ctx_person_id()
$$;

-- Resolving a slug to an id is the one cross-tenant lookup members and invitations need.
CREATE FUNCTION platform.person_id_by_slug(p_slug text) RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id FROM platform.persons p WHERE p.slug = lower(p_slug) AND p.status = 'active'
$$;

CREATE FUNCTION platform.person_id_by_email(p_email text) RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT p.id FROM platform.persons p WHERE lower(p.email) = lower(p_email)
$$;
"""

RESOLVE_CONTEXT = """
-- One statement per request: re-read the person, the session or API key, and the membership
-- for the requested org; then bind this transaction's RLS settings to what was found.
CREATE FUNCTION platform.resolve_context(
    p_person uuid, p_session uuid, p_key_prefix text, p_key_hash text,
    p_org_id uuid, p_org_slug text, p_trace text)
RETURNS TABLE (person_id uuid, person_slug text, person_status text, session_ok boolean,
               key_id uuid, key_org_id uuid, key_scopes text[],
               org_id uuid, org_slug text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_person uuid := p_person;
  v_key platform.api_keys%ROWTYPE;
  v_session_ok boolean := true;
  v_status text;
  v_slug text;
  v_org uuid;
  v_org_slug text;
  v_role text;
BEGIN
  IF p_key_prefix IS NOT NULL THEN
    SELECT * INTO v_key FROM platform.api_keys k
     WHERE k.prefix = p_key_prefix AND k.secret_hash = p_key_hash
       AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now());
    IF NOT FOUND THEN
      RETURN;
    END IF;
    v_person := v_key.person_id;
    -- last-used is kept to the minute: a write per request would cost more than it tells
    IF v_key.last_used_at IS NULL OR v_key.last_used_at < now() - interval '1 minute' THEN
      UPDATE platform.api_keys k SET last_used_at = now() WHERE k.id = v_key.id;
    END IF;
  END IF;

  SELECT p.status, p.slug INTO v_status, v_slug FROM platform.persons p WHERE p.id = v_person;
  IF NOT FOUND THEN
    RETURN;
  END IF;

  IF p_session IS NOT NULL THEN
    SELECT (s.revoked_at IS NULL AND s.expires_at > now() AND s.person_id = v_person)
      INTO v_session_ok FROM platform.auth_sessions s WHERE s.id = p_session;
    v_session_ok := coalesce(v_session_ok, false);
  END IF;

  IF p_org_slug IS NOT NULL THEN
    SELECT o.id, o.slug INTO v_org, v_org_slug FROM platform.orgs o WHERE o.slug = p_org_slug;
  ELSIF p_org_id IS NOT NULL THEN
    SELECT o.id, o.slug INTO v_org, v_org_slug FROM platform.orgs o WHERE o.id = p_org_id;
  ELSIF v_key.org_id IS NOT NULL THEN
    SELECT o.id, o.slug INTO v_org, v_org_slug FROM platform.orgs o WHERE o.id = v_key.org_id;
  END IF;
  IF v_org IS NOT NULL THEN
    SELECT m.role INTO v_role FROM platform.org_members m WHERE m.org_id = v_org AND m.person_id = v_person;
  END IF;

  PERFORM set_config('app.mode', 'user', true),
          set_config('app.person_id', v_person::text, true),
          set_config('app.org_id', CASE WHEN v_role IS NULL THEN '' ELSE v_org::text END, true),
          set_config('app.trace_id', coalesce(p_trace, ''), true);

  RETURN QUERY SELECT v_person, v_slug, v_status, v_session_ok, v_key.id, v_key.org_id, v_key.scopes,
                      v_org, v_org_slug, v_role;
END
$$;
"""

OUTBOX_NOTIFY = """
CREATE FUNCTION platform.notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('atlilith_outbox', '');
  RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON platform.outbox
  FOR EACH STATEMENT EXECUTE FUNCTION platform.notify_outbox();
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
