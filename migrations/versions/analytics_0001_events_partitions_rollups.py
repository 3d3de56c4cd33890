"""analytics: events partitioned by month, idempotency ids, 15-minute and hourly rollups

Revision ID: analytics_0001
Revises:
Create Date: 2026-11-22 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import SYSTEM, TENANT, enable_tenant_rls, execute_script

revision: str = "analytics_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("analytics",)
depends_on: str | Sequence[str] | None = "0001"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    # Monthly partitions live apart from the tables the models describe.
    op.execute("CREATE SCHEMA IF NOT EXISTS analytics_partitions")
    op.create_table(
        "events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column(
            "properties",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        schema="analytics",
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index(
        "ix_events_tenant_id_name_ts", "events", ["tenant_id", "name", "ts"], unique=False, schema="analytics"
    )
    op.create_index(
        "ix_events_ts_brin", "events", ["ts"], unique=False, schema="analytics", postgresql_using="brin"
    )
    op.create_table(
        "event_ids",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_event_ids")),
        schema="analytics",
    )
    op.create_table(
        "counts",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("grain", sa.SmallInteger(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "grain", "name", "bucket", "person_id", "shard", name=op.f("pk_counts")
        ),
        schema="analytics",
    )
    for table in ("analytics.events", "analytics.event_ids", "analytics.counts"):
        enable_tenant_rls(table)
    execute_script(ENSURE_PARTITIONS)
    # The backfill window (a year by default) and a few months ahead; the daily schedule and
    # the ingest path keep it so (`core.analytics.partitions`).
    op.execute(
        "SELECT analytics.ensure_partitions(now() - interval '13 months', now() + interval '3 months')"
    )


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")


# The app role may not run DDL; this owner-owned function creates the monthly partitions it
# needs, each with the same row-level security policy and the same grants as the parent (a
# partition read directly, not through `analytics.events`, is checked against its own policy).
ENSURE_PARTITIONS = f"""
CREATE FUNCTION analytics.ensure_partitions(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' AS $$
DECLARE
  v_month date := date_trunc('month', p_from AT TIME ZONE 'UTC')::date;
  v_last date := date_trunc('month', p_to AT TIME ZONE 'UTC')::date;
  v_name text;
  v_created integer := 0;
  v_grant record;
BEGIN
  IF p_from IS NULL OR p_to IS NULL OR p_to < p_from THEN
    RAISE EXCEPTION 'ensure_partitions: invalid range' USING ERRCODE = '22023';
  END IF;
  IF v_month < date '2000-01-01' OR v_last > (now() + interval '2 years')::date
     OR v_last > v_month + interval '25 years' THEN
    RAISE EXCEPTION 'ensure_partitions: range out of bounds' USING ERRCODE = '22023';
  END IF;
  -- One creator at a time; the others then find the partitions made.
  PERFORM pg_advisory_xact_lock(hashtext('analytics.ensure_partitions'));
  WHILE v_month <= v_last LOOP
    v_name := 'events_' || to_char(v_month, 'YYYY_MM');
    IF to_regclass('analytics_partitions.' || v_name) IS NULL THEN
      EXECUTE format(
        'CREATE TABLE analytics_partitions.%I PARTITION OF analytics.events FOR VALUES FROM (%L) TO (%L)',
        v_name, v_month::timestamp AT TIME ZONE 'UTC', (v_month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
      EXECUTE format('ALTER TABLE analytics_partitions.%I ENABLE ROW LEVEL SECURITY', v_name);
      EXECUTE format(
        'CREATE POLICY tenant_isolation ON analytics_partitions.%I USING ({SYSTEM} OR tenant_id = {TENANT})'
        ' WITH CHECK ({SYSTEM} OR tenant_id = {TENANT})', v_name);
      FOR v_grant IN
        SELECT a.grantee::regrole::text AS grantee, a.privilege_type
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = 'analytics.events'::regclass AND a.grantee <> 0 AND a.grantee <> c.relowner
      LOOP
        EXECUTE format('GRANT %s ON analytics_partitions.%I TO %s', v_grant.privilege_type, v_name, v_grant.grantee);
      END LOOP;
      v_created := v_created + 1;
    END IF;
    v_month := (v_month + interval '1 month')::date;
  END LOOP;
  RETURN v_created;
END $$;
"""
