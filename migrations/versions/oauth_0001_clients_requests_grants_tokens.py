"""oauth: clients, authorization requests, grants (connections), codes and tokens

Revision ID: oauth_0001
Revises:
Create Date: 2026-12-06 01:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import PERSON, SYSTEM, enable_rls, execute_script

revision: str = "oauth_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("oauth",)
depends_on: str | Sequence[str] | None = "0001"


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "oauth_clients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("client_name", sa.Text(), nullable=True),
        sa.Column("metadata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("refresh_after", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('registered', 'document')", name=op.f("ck_oauth_clients_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_clients")),
        schema="platform",
    )
    op.create_index(
        "uq_oauth_clients_client_id", "oauth_clients", ["client_id"], unique=True, schema="platform"
    )
    op.create_table(
        "oauth_requests",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_name", sa.Text(), nullable=True),
        sa.Column("client_uri", sa.Text(), nullable=True),
        sa.Column("logo_uri", sa.Text(), nullable=True),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("redirect_uri_explicit", sa.Boolean(), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("code_challenge", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'denied')", name=op.f("ck_oauth_requests_status")
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["platform.oauth_clients.client_id"],
            name=op.f("fk_oauth_requests_client_id_oauth_clients"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_oauth_requests_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_requests")),
        schema="platform",
    )
    op.create_index("ix_oauth_requests_expires_at", "oauth_requests", ["expires_at"], schema="platform")
    op.create_table(
        "oauth_grants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_name", sa.Text(), nullable=True),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["platform.oauth_clients.client_id"],
            name=op.f("fk_oauth_grants_client_id_oauth_clients"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_oauth_grants_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_oauth_grants_person_id_persons"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_grants")),
        schema="platform",
    )
    op.create_index("ix_oauth_grants_person_id", "oauth_grants", ["person_id"], schema="platform")
    op.create_table(
        "oauth_codes",
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=False),
        sa.Column("redirect_uri_explicit", sa.Boolean(), nullable=False),
        sa.Column("code_challenge", sa.Text(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["platform.oauth_grants.id"],
            name=op.f("fk_oauth_codes_grant_id_oauth_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_oauth_codes")),
        schema="platform",
    )
    op.create_index("ix_oauth_codes_grant_id", "oauth_codes", ["grant_id"], schema="platform")
    op.create_table(
        "oauth_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("grant_id", sa.Uuid(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("resource", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('access', 'refresh')", name=op.f("ck_oauth_tokens_kind")),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["platform.oauth_grants.id"],
            name=op.f("fk_oauth_tokens_grant_id_oauth_grants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_oauth_tokens")),
        schema="platform",
    )
    op.create_index("ix_oauth_tokens_grant_id", "oauth_tokens", ["grant_id"], schema="platform")

    own = f"{SYSTEM} OR person_id = {PERSON}"
    for table in ("platform.oauth_requests", "platform.oauth_grants"):
        enable_rls(table, {"own_rows": ("ALL", own, own)})
    for table in ("platform.oauth_clients", "platform.oauth_tokens"):
        enable_rls(table, {"system_only": ("ALL", SYSTEM, SYSTEM)})
    # The person approving a request writes its code (for their own grant); only the
    # authorization server reads codes.
    enable_rls(
        "platform.oauth_codes",
        {
            "system_only": ("ALL", SYSTEM, SYSTEM),
            "owner_insert": (
                "INSERT",
                None,
                f"grant_id IN (SELECT g.id FROM platform.oauth_grants g WHERE g.person_id = {PERSON})",
            ),
        },
    )
    execute_script(FUNCTIONS)


FUNCTIONS = """
-- The consent page's first look at a request: the first signed-in person to open it claims
-- it; anyone else is told it does not exist. The request id is the secret in the page's URL.
CREATE FUNCTION platform.claim_oauth_request(p_id text) RETURNS boolean LANGUAGE sql VOLATILE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  WITH claimed AS (
    UPDATE platform.oauth_requests r SET person_id = platform.ctx_person_id()
     WHERE r.id = p_id AND r.expires_at > now() AND r.status = 'pending'
       AND platform.ctx_person_id() IS NOT NULL
       AND (r.person_id IS NULL OR r.person_id = platform.ctx_person_id())
    RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM claimed)
$$;

-- Who an OAuth access token acts for, and whether it is live. Marks the connection used (to
-- the minute: a write per call would cost more than it tells).
CREATE FUNCTION platform.oauth_token_owner(p_hash text)
RETURNS TABLE (grant_id uuid, person_id uuid, grant_org_id uuid, client_id text, scopes text[],
               resource text, status text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
  v_tok platform.oauth_tokens%ROWTYPE;
  v_grant platform.oauth_grants%ROWTYPE;
  v_status text := 'ok';
BEGIN
  SELECT * INTO v_tok FROM platform.oauth_tokens t WHERE t.token_hash = p_hash AND t.kind = 'access';
  IF NOT FOUND THEN
    RETURN;
  END IF;
  SELECT * INTO v_grant FROM platform.oauth_grants g WHERE g.id = v_tok.grant_id;
  IF v_tok.revoked_at IS NOT NULL OR v_grant.revoked_at IS NOT NULL THEN
    v_status := 'revoked';
  ELSIF v_tok.expires_at <= now() THEN
    v_status := 'expired';
  ELSIF v_grant.last_used_at IS NULL OR v_grant.last_used_at < now() - interval '1 minute' THEN
    UPDATE platform.oauth_grants g SET last_used_at = now() WHERE g.id = v_grant.id;
  END IF;
  RETURN QUERY SELECT v_grant.id, v_grant.person_id, v_grant.org_id, v_grant.client_id, v_tok.scopes,
                      v_tok.resource, v_status;
END
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
