"""bookings: busy time and stale-hold expiry as PL/pgSQL, the permission checked once, plans kept

Revision ID: bookings_0005
Revises: bookings_0004
Create Date: 2026-12-06 19:15:00.000000

`provider_busy` and `expire_stale_holds` were SQL functions. A SQL function that is not inlined
(SECURITY DEFINER with its own search_path never is) is parsed and planned again in every
statement that calls it: every slot search and every hold paid that, about 1 ms of PostgreSQL
time in a search of a month (a direct read of the same rows: 0.25 ms). A PL/pgSQL body keeps
its plans for the connection's life. Same answers, same permission (`may_schedule`, asked once
before the read; anything but true -- false or NULL -- answers nothing, as the SQL WHERE did),
same snapshot rules (STABLE reads the caller's snapshot; VOLATILE sees its own statement).
"""

from collections.abc import Sequence

from migrations.rls import execute_script

revision: str = "bookings_0005"
down_revision: str | Sequence[str] | None = "bookings_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = """
CREATE OR REPLACE FUNCTION bookings.provider_busy(p_provider uuid, p_from timestamptz, p_to timestamptz,
                                                  p_except uuid DEFAULT NULL)
RETURNS TABLE (blocked_from timestamptz, blocked_until timestamptz) LANGUAGE plpgsql STABLE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF bookings.may_schedule(p_provider) IS NOT TRUE THEN
    RETURN;
  END IF;
  RETURN QUERY
  SELECT lower(b.blocked), upper(b.blocked) FROM bookings.bookings b
   WHERE b.provider_id = p_provider
     AND b.blocked && tstzrange(p_from, p_to, '[)')
     AND b.status IN ('held', 'requested', 'confirmed')
     AND NOT (b.status = 'held' AND b.hold_expires_at <= now())
     AND b.id IS DISTINCT FROM p_except
   ORDER BY 1;
END
$$;

CREATE OR REPLACE FUNCTION bookings.expire_stale_holds(p_provider uuid, p_from timestamptz,
                                                       p_to timestamptz)
RETURNS integer LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_expired integer;
BEGIN
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
