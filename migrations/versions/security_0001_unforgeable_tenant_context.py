"""an unforgeable tenant context: signed user contexts, system work only for the system role

Revision ID: security_0001
Revises:
Create Date: 2026-12-06 02:00:00.000000

The policies read the transaction's `app.*` settings. Any role may `set_config` them, so until
now SQL on the app role's connection could claim `app.mode = 'system'` (every row) or any person.
From here:
- 'system' and 'service' count only on a connection of the system role (its own pool, which
  the request path never uses); the role's name is in `platform_private.context_key`, written
  by `migrate` from the settings.
- 'user' counts only with `app.ctx_sig`, an HMAC-SHA256 over the person, the org, the backend
  and the transaction's start, keyed by a random key in `platform_private`, a schema no role
  but the owner may read. Only the owner's SECURITY DEFINER functions sign: `resolve_context`
  after it has checked a credential, and `bind_ticket` from a ticket `resolve_context` issued.
HMAC is built on the core `sha256()` (pgcrypto is not in every PostgreSQL build we run on).
"""

import secrets
from collections.abc import Sequence

from alembic import op

from migrations.rls import execute_script

revision: str = "security_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("security",)
depends_on: str | Sequence[str] | None = "0003"

# How long a context ticket can rebind its context in a later transaction (a unit of work
# that released its connection around a slow peer call).
TICKET_SECONDS = 3600


def upgrade() -> None:
    key = secrets.token_bytes(64)  # one SHA-256 block: HMAC pads the key to it
    ipad = bytes(b ^ 0x36 for b in key).hex()
    opad = bytes(b ^ 0x5C for b in key).hex()
    op.execute("CREATE SCHEMA platform_private")
    op.execute(
        "CREATE TABLE platform_private.context_key ("
        " id int PRIMARY KEY CHECK (id = 1), k_ipad bytea NOT NULL, k_opad bytea NOT NULL,"
        " system_role text NOT NULL DEFAULT '')"
    )
    # No policy: only its owner (who bypasses row-level security) ever reads it.
    op.execute("ALTER TABLE platform_private.context_key ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"INSERT INTO platform_private.context_key (id, k_ipad, k_opad)"
        f" VALUES (1, '\\x{ipad}'::bytea, '\\x{opad}'::bytea)"
    )
    execute_script(PRIVATE_FUNCTIONS.replace("{ticket_seconds}", str(TICKET_SECONDS)))
    execute_script(CONTEXT_FUNCTIONS)
    execute_script(RESOLVE_CONTEXT)
    op.execute("REVOKE ALL ON SCHEMA platform_private FROM PUBLIC")
    op.execute("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA platform_private FROM PUBLIC")


PRIVATE_FUNCTIONS = """
CREATE FUNCTION platform_private.mac(p_msg text) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT encode(sha256(k.k_opad || sha256(k.k_ipad || convert_to(p_msg, 'UTF8'))), 'hex')
    FROM platform_private.context_key k WHERE k.id = 1
$$;

-- What a user context is signed over: who, in which org, on this backend, in this transaction.
CREATE FUNCTION platform_private.user_msg(p_person text, p_org text) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT 'user|' || coalesce(p_person, '') || '|' || coalesce(p_org, '') || '|'
         || pg_backend_pid()::text || '|' || extract(epoch FROM now())::text
$$;

CREATE FUNCTION platform_private.bind_user(p_person uuid, p_org uuid, p_trace text) RETURNS void
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_person text := coalesce(p_person::text, '');
  v_org text := coalesce(p_org::text, '');
BEGIN
  PERFORM set_config('app.mode', 'user', true),
          set_config('app.person_id', v_person, true),
          set_config('app.org_id', v_org, true),
          set_config('app.trace_id', coalesce(p_trace, ''), true),
          set_config('app.ctx_sig', platform_private.mac(platform_private.user_msg(v_person, v_org)), true);
END
$$;

CREATE FUNCTION platform_private.ticket(p_person uuid, p_org uuid) RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  WITH t AS (SELECT (floor(extract(epoch FROM now())) + {ticket_seconds})::bigint AS expires)
  SELECT t.expires::text || '.' || platform_private.mac(
           'ticket|' || p_person::text || '|' || coalesce(p_org::text, '') || '|' || t.expires::text)
    FROM t
$$;
"""

CONTEXT_FUNCTIONS = """
-- The context the policies may believe: 'system' or 'service' only on a system-role
-- connection, 'user' only when signed for this backend and transaction; else 'none'.
CREATE FUNCTION platform.ctx_mode() RETURNS text LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_mode text := coalesce(current_setting('app.mode', true), '');
BEGIN
  IF v_mode IN ('system', 'service') THEN
    IF session_user::text = (SELECT k.system_role FROM platform_private.context_key k WHERE k.id = 1) THEN
      RETURN v_mode;
    END IF;
  ELSIF v_mode = 'user' THEN
    IF coalesce(current_setting('app.ctx_sig', true), '') = platform_private.mac(platform_private.user_msg(
         coalesce(current_setting('app.person_id', true), ''),
         coalesce(current_setting('app.org_id', true), ''))) THEN
      RETURN 'user';
    END IF;
  END IF;
  RETURN 'none';
END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_person_id() RETURNS uuid LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE WHEN platform.ctx_mode() IN ('user', 'service', 'system')
              THEN nullif(current_setting('app.person_id', true), '')::uuid END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_is_system() RETURNS boolean LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT platform.ctx_mode() = 'system'
$$;

CREATE OR REPLACE FUNCTION platform.ctx_org_id() RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE
    WHEN coalesce(current_setting('app.org_id', true), '') = '' THEN NULL
    WHEN platform.ctx_mode() IN ('service', 'system')
      THEN nullif(current_setting('app.org_id', true), '')::uuid
    WHEN platform.ctx_mode() = 'user' THEN (
      SELECT m.org_id FROM platform.org_members m
       WHERE m.org_id = nullif(current_setting('app.org_id', true), '')::uuid
         AND m.person_id = platform.ctx_person_id())
  END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_is_platform_admin() RETURNS boolean LANGUAGE sql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT platform.ctx_mode() = 'user' AND EXISTS (
    SELECT 1 FROM platform.persons p
     WHERE p.id = platform.ctx_person_id() AND p.is_platform_admin AND p.status = 'active')
$$;

-- A person's context again in a later transaction, from the ticket resolve_context issued.
CREATE FUNCTION platform.bind_ticket(p_person uuid, p_org uuid, p_ticket text, p_trace text)
RETURNS void LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_expires text := split_part(coalesce(p_ticket, ''), '.', 1);
BEGIN
  IF v_expires !~ '^[0-9]{1,12}$' OR v_expires::bigint < extract(epoch FROM now())
     OR split_part(p_ticket, '.', 2) <> platform_private.mac(
          'ticket|' || p_person::text || '|' || coalesce(p_org::text, '') || '|' || v_expires) THEN
    RAISE EXCEPTION 'invalid or expired context ticket' USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM platform_private.bind_user(p_person, p_org, p_trace);
END
$$;
"""

RESOLVE_CONTEXT = """
CREATE OR REPLACE FUNCTION platform.resolve_context(
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

  PERFORM platform_private.bind_user(v_person, CASE WHEN v_role IS NULL THEN NULL ELSE v_org END, p_trace);
  -- A later transaction of the same unit of work rebinds this context with it (bind_ticket).
  PERFORM set_config('app.ctx_ticket',
                     platform_private.ticket(v_person, CASE WHEN v_role IS NULL THEN NULL ELSE v_org END),
                     true);

  RETURN QUERY SELECT v_person, v_slug, v_status, v_session_ok, v_key.id, v_key.org_id, v_key.scopes,
                      v_org, v_org_slug, v_role;
END
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
