"""platform: a membership never changes whose it is; an invitation only moves out of pending

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 02:20:00.000000

0007 closed the insert path to a membership nobody accepted, but two updates still led there.
The org's context may update its memberships, so SQL run there could re-point a member's row at
another person; and an invitee may update their own invitation, so SQL run in their context
could revive a revoked one or raise its role, then accept it. Column grants would not hold (every
migration grants DML on all tables again), so triggers refuse both, whatever the role:
- a membership's org and person never change (the app only changes its role);
- outside system work (sign-up binding an emailed invitation, expiry), an invitation changes
  only its status, from pending to an answer, and when it was answered.
"""

from collections.abc import Sequence

from migrations.rls import execute_script

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


GUARDS = """
CREATE FUNCTION platform.membership_keeps_its_parties() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF NEW.org_id IS DISTINCT FROM OLD.org_id OR NEW.person_id IS DISTINCT FROM OLD.person_id THEN
    RAISE EXCEPTION 'a membership''s org and person never change: invite the person instead'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER membership_keeps_its_parties BEFORE UPDATE ON platform.org_members
  FOR EACH ROW EXECUTE FUNCTION platform.membership_keeps_its_parties();

CREATE FUNCTION platform.invitation_only_answered() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF platform.ctx_is_system() THEN
    RETURN NEW;
  END IF;
  IF NEW.org_id IS DISTINCT FROM OLD.org_id OR NEW.email IS DISTINCT FROM OLD.email
     OR NEW.invitee_person_id IS DISTINCT FROM OLD.invitee_person_id OR NEW.role IS DISTINCT FROM OLD.role
     OR NEW.expires_at IS DISTINCT FROM OLD.expires_at
     -- only to NULL: a deleted inviter's ON DELETE SET NULL
     OR (NEW.invited_by IS DISTINCT FROM OLD.invited_by AND NEW.invited_by IS NOT NULL)
     OR NEW.created_at IS DISTINCT FROM OLD.created_at
     OR (NEW.status IS DISTINCT FROM OLD.status AND (OLD.status <> 'pending' OR NEW.status = 'pending')) THEN
    RAISE EXCEPTION 'an invitation is only answered or revoked: send a new one instead'
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER invitation_only_answered BEFORE UPDATE ON platform.invitations
  FOR EACH ROW EXECUTE FUNCTION platform.invitation_only_answered();
"""


def upgrade() -> None:
    execute_script(GUARDS)


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
