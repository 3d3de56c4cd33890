"""the context's signing helpers and the policies' SQL helpers in PL/pgSQL: planned once per connection

Revision ID: security_0005
Revises: security_0004
Create Date: 2026-12-07 03:00:00.000000

A SQL function with its own `search_path` (or SECURITY DEFINER) is never inlined, and
PostgreSQL 15 keeps its parsed and planned body only as long as the calling expression's state:
a PL/pgSQL caller's simple expressions live for one transaction, a statement's InitPlan for one
execution. So `platform_private.mac`, `user_msg` and `ticket` -- called by `bind_user` and
`resolve_context` on every request and by `ctx_mode` in each policy's InitPlan -- were parsed,
analysed and planned again in every transaction (a perf profile of `resolve_context` put
`fmgr_sql`, mostly parse and plan, at 43 % of its backend time). PL/pgSQL keeps its plans for
the connection. The same holds for the policies' `co_member_ids`, `owns_org`,
`has_invitation` and the slug and e-mail lookups.

Same signatures, answers, owners, SECURITY DEFINER, `search_path` and grants (CREATE OR REPLACE
keeps the owner and grants). The HMAC is the same computation over the same message, so
signatures and tickets made before the upgrade still verify after it and the other way round.
`ctx_tenant_id` stays an (inlined) SQL CASE; `claim_oauth_request` (one call per consent page,
an UPDATE in a CTE) stays SQL.
"""

from collections.abc import Sequence

from migrations.rls import execute_script

revision: str = "security_0005"
down_revision: str | Sequence[str] | None = "security_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As security_0001 wrote it: how long a context ticket can rebind its context.
TICKET_SECONDS = 3600


def upgrade() -> None:
    execute_script(PRIVATE_FUNCTIONS.replace("{ticket_seconds}", str(TICKET_SECONDS)))
    execute_script(POLICY_FUNCTIONS)


# The bodies are security_0001's expressions, unchanged: one key read, the same bytes hashed.
PRIVATE_FUNCTIONS = """
CREATE OR REPLACE FUNCTION platform_private.mac(p_msg text) RETURNS text LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_mac text;
BEGIN
  -- No key row: NULL, as the SQL body's empty result was.
  SELECT encode(sha256(k.k_opad || sha256(k.k_ipad || convert_to(p_msg, 'UTF8'))), 'hex')
    INTO v_mac FROM platform_private.context_key k WHERE k.id = 1;
  RETURN v_mac;
END
$$;

CREATE OR REPLACE FUNCTION platform_private.user_msg(p_person text, p_org text) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN 'user|' || coalesce(p_person, '') || '|' || coalesce(p_org, '') || '|'
         || pg_backend_pid()::text || '|' || extract(epoch FROM now())::text;
END
$$;

CREATE OR REPLACE FUNCTION platform_private.ticket(p_person uuid, p_org uuid) RETURNS text
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_expires bigint := (floor(extract(epoch FROM now())) + {ticket_seconds})::bigint;
BEGIN
  RETURN v_expires::text || '.' || platform_private.mac(
           'ticket|' || p_person::text || '|' || coalesce(p_org::text, '') || '|' || v_expires::text);
END
$$;
"""

POLICY_FUNCTIONS = """
CREATE OR REPLACE FUNCTION platform.owns_org(p_org uuid) RETURNS boolean LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM platform.orgs o WHERE o.id = p_org AND o.owner_id = platform.ctx_person_id());
END
$$;

CREATE OR REPLACE FUNCTION platform.has_invitation(p_org uuid, p_role text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN EXISTS (SELECT 1 FROM platform.invitations i
                  WHERE i.org_id = p_org AND i.role = p_role AND i.status = 'pending'
                    AND i.expires_at > now() AND i.invitee_person_id = platform.ctx_person_id());
END
$$;

CREATE OR REPLACE FUNCTION platform.co_member_ids() RETURNS SETOF uuid LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_person uuid := platform.ctx_person_id();
BEGIN
  -- No verified person: nobody (the join on NULL found none either).
  IF v_person IS NULL THEN
    RETURN;
  END IF;
  RETURN QUERY SELECT DISTINCT m2.person_id FROM platform.org_members m1
                 JOIN platform.org_members m2 ON m2.org_id = m1.org_id
                WHERE m1.person_id = v_person;
END
$$;

CREATE OR REPLACE FUNCTION platform.person_id_by_slug(p_slug text) RETURNS uuid LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_id uuid;
BEGIN
  SELECT p.id INTO v_id FROM platform.persons p WHERE p.slug = lower(p_slug) AND p.status = 'active';
  RETURN v_id;
END
$$;

CREATE OR REPLACE FUNCTION platform.person_id_by_email(p_email text) RETURNS uuid LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_id uuid;
BEGIN
  SELECT p.id INTO v_id FROM platform.persons p WHERE lower(p.email) = lower(p_email);
  RETURN v_id;
END
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
