"""bookings: expire_stale_holds looks for a stale hold before it checks the permission

Revision ID: bookings_0006
Revises: bookings_0005
Create Date: 2026-12-07 08:00:00.000000

Every hold and request calls `expire_stale_holds` for each candidate provider, and almost
always there is nothing to expire. It asked `may_schedule` (the context's signature verified,
the membership read) and then ran an UPDATE that found no row: 65 µs per call. It now first
looks for a stale hold in the range (one index probe, 21 µs when there is none) and returns 0
at once when there is none -- the answer both the refused and the permitted path gave for
that case. With a stale hold, the permission is checked and the UPDATE runs as before. The
caller holds the provider's write lock (`core.bookings.queries.lock_providers`), so no writer
for that provider commits between the look and the UPDATE; and staleness is measured against
the transaction's `now()`, fixed for both. Same signature, owner, SECURITY DEFINER,
`search_path` and grants.
"""

from collections.abc import Sequence

from migrations.rls import execute_script

revision: str = "bookings_0006"
down_revision: str | Sequence[str] | None = "bookings_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = """
CREATE OR REPLACE FUNCTION bookings.expire_stale_holds(p_provider uuid, p_from timestamptz,
                                                       p_to timestamptz)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_expired integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM bookings.bookings b
                  WHERE b.provider_id = p_provider AND b.status = 'held' AND b.hold_expires_at <= now()
                    AND b.blocked && tstzrange(p_from, p_to, '[)')) THEN
    RETURN 0;
  END IF;
  IF bookings.may_schedule(p_provider) IS NOT TRUE THEN
    RETURN 0;
  END IF;
  UPDATE bookings.bookings b SET status = 'expired', updated_at = now()
   WHERE b.provider_id = p_provider AND b.status = 'held' AND b.hold_expires_at <= now()
     AND b.blocked && tstzrange(p_from, p_to, '[)');
  GET DIAGNOSTICS v_expired = ROW_COUNT;
  RETURN v_expired;
END
$$;
"""


def upgrade() -> None:
    execute_script(FUNCTIONS)


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
