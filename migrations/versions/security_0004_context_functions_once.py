"""the context functions verify the context once per call, and only when the answer needs it

Revision ID: security_0004
Revises: security_0003
Create Date: 2026-12-06 19:55:00.000000

Every policy asks `ctx_is_system()` and `ctx_tenant_id()` (or `ctx_org_id()`), once per table
per statement. As SQL functions with their own search_path (never inlined, planned again on each
call), `ctx_org_id` verified the context's MAC up to three times (`ctx_mode` twice, once more
through `ctx_person_id`), `may_schedule` up to five, and `ctx_is_system` once even in a user
context, where the answer is false whatever the MAC says. Now, in PL/pgSQL (plans kept for the
connection):
- a function asks `ctx_mode()` at most once and passes the verified mode on;
- it skips the MAC when the settings alone decide the answer: no org claimed -> no org; no
  person claimed -> no person; a mode other than 'system' (or 'user' for the admin check) ->
  false. Each of these answers is the one the verified path gives, whatever the signature.
The verification is never kept in a setting: the app role can write any `app.*` setting.
Same signatures, owners, SECURITY DEFINER, search_path and grants (CREATE OR REPLACE keeps the
owner and grants). `ctx_tenant_id` (an inlinable SQL CASE over the two) is unchanged.
"""

from collections.abc import Sequence

from alembic import op

from migrations.rls import execute_script

revision: str = "security_0004"
down_revision: str | Sequence[str] | None = "security_0003"
branch_labels: str | Sequence[str] | None = None
# It replaces `bookings.may_schedule` (bookings_0001) and reads platform's memberships.
depends_on: str | Sequence[str] | None = "bookings_0001"


def upgrade() -> None:
    execute_script(FUNCTIONS)
    # Only the owner's functions reach it (the schema is closed to PUBLIC too).
    op.execute("REVOKE ALL ON FUNCTION platform_private.ctx_org_in(text) FROM PUBLIC")


FUNCTIONS = """
-- The org a verified mode may act in: the one rule behind ctx_org_id and may_schedule. For a
-- person ('user') the membership is re-checked here; handlers and jobs ('service') are trusted
-- with the org their event names; 'none' has none.
CREATE FUNCTION platform_private.ctx_org_in(p_mode text) RETURNS uuid LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  -- Cast whatever the mode: a claimed org that is no uuid fails the statement, as it always has.
  v_org uuid := nullif(current_setting('app.org_id', true), '')::uuid;
  v_member uuid;
BEGIN
  IF v_org IS NULL THEN
    RETURN NULL;
  ELSIF p_mode IN ('service', 'system') THEN
    RETURN v_org;
  ELSIF p_mode = 'user' THEN
    SELECT m.org_id INTO v_member FROM platform.org_members m
     WHERE m.org_id = v_org AND m.person_id = nullif(current_setting('app.person_id', true), '')::uuid;
  END IF;
  RETURN v_member;
END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_org_id() RETURNS uuid LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- No org claimed: no org in any mode, so the MAC need not be computed.
  IF coalesce(current_setting('app.org_id', true), '') = '' THEN
    RETURN NULL;
  END IF;
  RETURN platform_private.ctx_org_in(platform.ctx_mode());
END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_person_id() RETURNS uuid LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_person text := coalesce(current_setting('app.person_id', true), '');
BEGIN
  -- Unverified ('none') or no person claimed: no person. The cast only for a verified claim.
  IF v_person = '' OR platform.ctx_mode() = 'none' THEN
    RETURN NULL;
  END IF;
  RETURN v_person::uuid;
END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_is_system() RETURNS boolean LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- ctx_mode() answers 'system' only for that claim: any other claim is false unverified.
  IF coalesce(current_setting('app.mode', true), '') <> 'system' THEN
    RETURN false;
  END IF;
  RETURN platform.ctx_mode() = 'system';
END
$$;

CREATE OR REPLACE FUNCTION platform.ctx_is_platform_admin() RETURNS boolean LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coalesce(current_setting('app.mode', true), '') <> 'user' OR platform.ctx_mode() <> 'user' THEN
    RETURN false;
  END IF;
  RETURN EXISTS (
    SELECT 1 FROM platform.persons p
     WHERE p.id = nullif(current_setting('app.person_id', true), '')::uuid
       AND p.is_platform_admin AND p.status = 'active');
END
$$;

-- May the acting context schedule this provider? Themself, or a live member of the org the
-- context acts in. As before: true, false, or NULL (an unverified context, or no person and no
-- org match); callers treat anything but true as no.
CREATE OR REPLACE FUNCTION bookings.may_schedule(p_provider uuid) RETURNS boolean LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_mode text := platform.ctx_mode();
  v_person uuid;
BEGIN
  IF v_mode = 'system' THEN
    RETURN true;
  ELSIF v_mode <> 'none' THEN
    v_person := nullif(current_setting('app.person_id', true), '')::uuid;
  END IF;
  RETURN p_provider = v_person OR EXISTS (
    SELECT 1 FROM platform.org_members m
     WHERE m.org_id = platform_private.ctx_org_in(v_mode) AND m.person_id = p_provider);
END
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
