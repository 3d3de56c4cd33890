"""billing: a queued run's hold, sent with its transaction's COMMIT

Revision ID: billing_0002
Revises: billing_0001
Create Date: 2026-12-07 14:45:00.000000

`billing.hold_clear` is the quick path of a hold (`core.billing.ledger.hold` is the rule): the
account has the credits and the hold fires no low-balance alert. It holds then, as `_HOLD`
does, or refuses with SQLSTATE AT001 and writes nothing, and the caller takes the general path.
A queued run sends it with its COMMIT in one round trip (`core.db.commit_with`), so the
account's row lock lasts for the statement and the commit, not for a turn of the caller's event
loop as well.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "billing_0002"
down_revision: str | Sequence[str] | None = "billing_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # SECURITY INVOKER (the default): the caller's row-level security applies to every row.
    op.execute(
        """
CREATE FUNCTION billing.hold_clear(
    p_tenant uuid, p_amount bigint, p_threshold bigint, p_entry uuid, p_actor uuid, p_job uuid)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  v_account uuid;
  v_org uuid;
  v_balance bigint;
  v_held bigint;
BEGIN
  -- `ledger.held`'s alert fires when available after the hold is under the threshold and the
  -- account is not alerted yet: such a hold, a short account and a missing one are not ours.
  UPDATE billing.accounts SET held = held + p_amount, updated_at = now()
   WHERE tenant_id = p_tenant AND balance - held >= p_amount
     AND (low_balance_alerted OR balance - held - p_amount >= coalesce(low_balance_threshold, p_threshold))
  RETURNING id, org_id, balance, held INTO v_account, v_org, v_balance, v_held;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'this hold takes the general path' USING ERRCODE = 'AT001';
  END IF;
  INSERT INTO billing.ledger (id, person_id, org_id, account_id, kind, amount, balance_delta,
                              held_delta, balance_after, held_after, key, job_id)
  VALUES (p_entry, p_actor, v_org, v_account, 'hold', p_amount, 0, p_amount, v_balance, v_held,
          'hold:' || p_job::text, p_job);
END
$$;
"""
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
