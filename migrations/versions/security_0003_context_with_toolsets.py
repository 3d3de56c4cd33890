"""the caller's context and the toolsets it may use, in one statement

Revision ID: security_0003
Revises: security_0002
Create Date: 2026-12-06 12:30:00.000000

An MCP tool of an installable component is gated on its installation in the context the call
acts in (`core.registry.gate`). That was a second statement after `platform.resolve_context`
on every gated call, which REST never pays. `resolve_context` now answers, when asked
(`p_with_toolsets`), the toolsets available in the context it has just bound: always-on
components and those installed there, retired ones never. The rule is the gate's; the tenant is
the one the function itself resolved and bound, never a parameter, so no caller can read another
tenant's installations through it. Not asked (REST), it costs nothing.
"""

from collections.abc import Sequence

from alembic import op

from migrations.rls import execute_script

revision: str = "security_0003"
down_revision: str | Sequence[str] | None = "security_0002"
branch_labels: str | Sequence[str] | None = None
# The function reads the registry's catalogue and installations.
depends_on: str | Sequence[str] | None = "registry_0001"


def upgrade() -> None:
    # A new result column and parameter: the old signature goes (nothing else calls it).
    op.execute("DROP FUNCTION platform.resolve_context(uuid, uuid, text, text, uuid, text, text)")
    execute_script(RESOLVE_CONTEXT)


RESOLVE_CONTEXT = """
CREATE FUNCTION platform.resolve_context(
    p_person uuid, p_session uuid, p_key_prefix text, p_key_hash text,
    p_org_id uuid, p_org_slug text, p_trace text, p_with_toolsets boolean DEFAULT false)
RETURNS TABLE (person_id uuid, person_slug text, person_status text, session_ok boolean,
               key_id uuid, key_org_id uuid, key_scopes text[],
               org_id uuid, org_slug text, role text, toolsets text[])
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
  v_bound_org uuid;
  v_toolsets text[];
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
  v_bound_org := CASE WHEN v_role IS NULL THEN NULL ELSE v_org END;

  PERFORM platform_private.bind_user(v_person, v_bound_org, p_trace);
  -- A later transaction of the same unit of work rebinds this context with it (bind_ticket).
  PERFORM set_config('app.ctx_ticket', platform_private.ticket(v_person, v_bound_org), true);

  IF p_with_toolsets THEN
    -- The installation gate's rule (core.registry.gate), for the context bound just above.
    SELECT coalesce(array_agg(c.toolset ORDER BY c.toolset), '{}') INTO v_toolsets
      FROM registry.components c
     WHERE c.toolset IS NOT NULL AND c.retired_at IS NULL
       AND (c.availability <> 'install' OR EXISTS (
             SELECT 1 FROM registry.installations i
              WHERE i.component_id = c.id AND i.tenant_id = coalesce(v_bound_org, v_person)));
  END IF;

  RETURN QUERY SELECT v_person, v_slug, v_status, v_session_ok, v_key.id, v_key.org_id, v_key.scopes,
                      v_org, v_org_slug, v_role, v_toolsets;
END
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
