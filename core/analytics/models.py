"""Tables of the `analytics` schema. Row-level security, the partitions and the function that
creates them are in the migration.

- `events`: every event, partitioned by month on its time (`ts`); the partitions live in the
  schema `analytics_partitions` and are created ahead of time (`analytics.ensure_partitions`).
- `event_ids`: one row per (tenant, event id) ever accepted. A partitioned table can only enforce
  uniqueness together with its partition key, and a resend without a timestamp gets a new server
  time, so idempotency is kept here, in the same statement that inserts the event.
- `counts`: the rollup, events per (tenant, name, member, UTC bucket) at two grains, maintained
  in the ingest statement itself (striped over a few rows per key: see `shard`). Every IANA
  offset in use is a multiple of 15 minutes, so 15-minute buckets add up exactly to hours,
  days, weeks and months in any time zone; hourly ones serve zones on whole hours with four
  times fewer rows.

These are append-heavy fact tables: the tenant columns carry no foreign keys (a per-row
referential check would cost more than the insert itself). The ids come from the verified
context or the event, and an org's deletion purges its rows (`handlers.purge_deleted_org`).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    DateTime,
    Index,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import Uuid

from core.db import Base

SCHEMA = "analytics"
PARTITIONS_SCHEMA = "analytics_partitions"
TENANT_ID = "COALESCE(org_id, person_id)"
# The rollup grains, in minutes; see the module docstring.
GRAINS = (15, 60)

events = Table(
    "events",
    Base.metadata,
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("name", Text, nullable=False),
    Column("client_id", Text),
    Column("source", Text, nullable=False),
    Column("properties", JSONB, server_default=text("'{}'::jsonb"), nullable=False),
    # Who produced the event (the member, in an org) and the context it belongs to.
    Column("person_id", Uuid(as_uuid=True), nullable=False),
    Column("org_id", Uuid(as_uuid=True)),
    Column("tenant_id", Uuid(as_uuid=True), Computed(TENANT_ID, persisted=True), nullable=False),
    Column("received_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Index("ix_events_tenant_id_name_ts", "tenant_id", "name", "ts"),
    Index("ix_events_ts_brin", "ts", postgresql_using="brin"),
    schema=SCHEMA,
    postgresql_partition_by="RANGE (ts)",
)

event_ids = Table(
    "event_ids",
    Base.metadata,
    Column("tenant_id", Uuid(as_uuid=True), nullable=False),
    Column("id", Uuid(as_uuid=True), nullable=False),
    PrimaryKeyConstraint("tenant_id", "id"),
    schema=SCHEMA,
)

counts = Table(
    "counts",
    Base.metadata,
    Column("tenant_id", Uuid(as_uuid=True), nullable=False),
    # Minutes per bucket: 15 (any zone) and 60 (4x fewer rows, for zones on whole hours).
    Column("grain", SmallInteger, nullable=False),
    Column("name", Text, nullable=False),
    Column("bucket", DateTime(timezone=True), nullable=False),
    Column("person_id", Uuid(as_uuid=True), nullable=False),
    # Striped counter: concurrent batches of one tenant update different rows (the shard is the
    # writer's backend), so they never wait on each other's row locks; readers sum the shards.
    Column("shard", SmallInteger, server_default=text("0"), nullable=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("tenant_id", "grain", "name", "bucket", "person_id", "shard"),
    schema=SCHEMA,
)
