"""one set of secrets per database: the fingerprint of each secret the database was set up with

Revision ID: security_0002
Revises: security_0001
Create Date: 2026-12-06 04:00:00.000000

Several app processes share one database; if they sign tokens (or key polyseme ids) with
different secrets, tokens minted by one are refused by the other and one client gets two ids.
The first process to use a secret records its fingerprint (an HMAC keyed by the secret, never
the secret) here; every later process compares its own through `platform.bind_secret` and
refuses to start on a difference. The table sits in `platform_private`, which only the owner
reads, so a fingerprint cannot even be used to test guesses of a weak configured secret.
"""

from collections.abc import Sequence

from alembic import op

from migrations.rls import execute_script

revision: str = "security_0002"
down_revision: str | Sequence[str] | None = "security_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE TABLE platform_private.secret_fingerprints ("
        " name text PRIMARY KEY, fingerprint text NOT NULL,"
        " recorded_at timestamptz NOT NULL DEFAULT now())"
    )
    # No policy: only its owner (who bypasses row-level security) ever reads it.
    op.execute("ALTER TABLE platform_private.secret_fingerprints ENABLE ROW LEVEL SECURITY")
    execute_script(FINGERPRINT_CHECK)


FINGERPRINT_CHECK = """
-- Record the fingerprint if none is (the first process wins a race: ON CONFLICT waits for it),
-- then say whether the caller's matches the recorded one. The fingerprint never leaves.
CREATE FUNCTION platform.bind_secret(p_name text, p_fingerprint text)
RETURNS boolean LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF coalesce(p_name, '') = '' OR coalesce(p_fingerprint, '') = '' THEN
    RAISE EXCEPTION 'a secret name and fingerprint are required' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  INSERT INTO platform_private.secret_fingerprints (name, fingerprint)
    VALUES (p_name, p_fingerprint) ON CONFLICT (name) DO NOTHING;
  RETURN (SELECT f.fingerprint = p_fingerprint
            FROM platform_private.secret_fingerprints f WHERE f.name = p_name);
END
$$;
"""


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
