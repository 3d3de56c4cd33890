"""Tables of the `analytics` schema. Row-level security, the partitions and the function that
creates them are in the migration.

- `events`: every event, partitioned by month on its time (`ts`); the partitions live in the
  schema `analytics_partitions` and are created ahead of time (`analytics.ensure_partitions`).
  An event is identified by (tenant, id, timestamp), as PostHog does (a resend repeats both):
  a unique index, which on a partitioned table must hold the partition key anyway.
- `counts`: the rollup, events per (tenant, name, member, UTC bucket) at three grains, maintained
  in the ingest statement itself (striped over a few rows per key: see `shard`). Every IANA
  offset in use is a multiple of 15 minutes, so 15-minute buckets add up exactly to hours,
  days, weeks and months in any time zone; hourly ones serve zones on whole hours with four
  times fewer rows, daily ones (UTC days) whole UTC days with 24 times fewer.
- `property_counts`: the same counts per (tenant, name, UTC bucket, rolled-up properties):
  the values of a few keys (`ROLLUP_PROPERTIES`), so filters and breakdowns on them are sums.
- `client_sets`: the distinct clients of each 15-minute bucket, so distinct clients per bucket
  (in any zone) and over a range are exact unions of small sets, not scans of the events.
  Ingest appends them as sent; `compact_client_sets` folds closed buckets into `client_ids`
  (a per-tenant dictionary numbering each client id) and `client_id_sets` (the same sets as
  dictionary numbers), which readers count in C (see `client_sets.py`), and
  `client_timelines` (each folded hour's (client number, time) pairs, for funnels: see
  `timelines.py`).

These are append-heavy fact tables: the tenant columns carry no foreign keys (a per-row
referential check would cost more than the insert itself). The ids come from the verified
context or the event, and an org's deletion purges its rows (`handlers.purge_deleted_org`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Computed,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import Uuid

from core.db import Base

SCHEMA = "analytics"
PARTITIONS_SCHEMA = "analytics_partitions"
TENANT_ID = "COALESCE(org_id, person_id)"
# The rollup grains, in minutes; see the module docstring.
GRAINS = (15, 60, 1440)
# The property keys `property_counts` rolls up (as the SQL function `analytics.rollup_properties`
# of migration analytics_0002 projects them): filters and breakdowns on these keys only are
# answered from the rollup. A short list of low-cardinality keys: every distinct combination of
# their values is a row per bucket. Changing it takes a migration that rebuilds the rollup.
ROLLUP_PROPERTIES = frozenset(
    {"path", "plan", "channel", "status", "currency", "utm_source", "utm_medium", "utm_campaign"}
)

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
    # The client rides in the leaves: funnels and distinct-client slivers are index-only scans.
    Index("ix_events_tenant_id_name_ts_client", "tenant_id", "name", "ts", postgresql_include=["client_id"]),
    Index("uq_events_tenant_id_id_ts", "tenant_id", "id", "ts", unique=True),
    Index("ix_events_ts_brin", "ts", postgresql_using="brin"),
    schema=SCHEMA,
    postgresql_partition_by="RANGE (ts)",
)


def _rollup(name: str, key: Column[Any]) -> Table:
    """A striped counter of events per (tenant, grain, event name, UTC bucket, `key`)."""
    return Table(
        name,
        Base.metadata,
        Column("tenant_id", Uuid(as_uuid=True), nullable=False),
        # Minutes per bucket: 15 (any zone), 60 (zones on whole hours) and 1440 (UTC days).
        Column("grain", SmallInteger, nullable=False),
        Column("name", Text, nullable=False),
        Column("bucket", DateTime(timezone=True), nullable=False),
        key,
        # Striped counter: concurrent batches of one tenant update different rows (the shard is
        # the writer's backend), so they never wait on each other's row locks; readers sum the
        # shards.
        Column("shard", SmallInteger, server_default=text("0"), nullable=False),
        Column("n", BigInteger, nullable=False),
        # INCLUDE (n): a range of rollup rows is an index-only scan.
        PrimaryKeyConstraint(
            "tenant_id", "grain", "name", "bucket", key.name, "shard", postgresql_include=["n"]
        ),
        schema=SCHEMA,
    )


counts = _rollup("counts", Column("person_id", Uuid(as_uuid=True), nullable=False))

property_counts = _rollup(
    "property_counts",
    # The event's `ROLLUP_PROPERTIES`, as sent (`{}` when it has none of them).
    Column("props", JSONB, nullable=False),
)


def _per_bucket(name: str, payload: Column[Any]) -> Table:
    """A table of `payload`s per (tenant, event name, bucket), read by a range of buckets: the
    three shapes `compact_client_sets` moves a closed bucket's distinct clients through."""
    return Table(
        name,
        Base.metadata,
        Column("tenant_id", Uuid(as_uuid=True), nullable=False),
        Column("name", Text, nullable=False),
        Column("bucket", DateTime(timezone=True), nullable=False),
        payload,
        Index(f"ix_{name}_tenant_id_name_bucket", "tenant_id", "name", "bucket"),
        schema=SCHEMA,
    )


client_sets = _per_bucket(
    "client_sets",
    # Distinct client ids of some of the bucket's events: the bucket's set is the union of its
    # rows (one per ingest batch, merged by `compact_client_sets`).
    Column("clients", ARRAY(Text), nullable=False),
)

client_ids = Table(
    "client_ids",
    Base.metadata,
    Column("tenant_id", Uuid(as_uuid=True), nullable=False),
    Column("client_id", Text, nullable=False),
    # Dense per tenant (0, 1, 2, ...), assigned only by `compact_client_sets`.
    Column("id", Integer, nullable=False),
    # INCLUDE (id): a reader's lookup of a client is an index-only scan.
    PrimaryKeyConstraint("tenant_id", "client_id", postgresql_include=["id"]),
    UniqueConstraint("tenant_id", "id"),
    schema=SCHEMA,
)

client_id_sets = _per_bucket(
    "client_id_sets",
    # Distinct `client_ids.id` of some of the bucket's events, 4 big-endian bytes each: the
    # bucket's set is the union of these rows and of its rows still in `client_sets`.
    Column("ids", LargeBinary, nullable=False),
)

client_timelines = _per_bucket(
    "client_timelines",
    # `bucket` is a UTC hour. Every event of the hour with a numbered client, as
    # (`client_ids.id`, exact time): 12 bytes each, `int4send(id) || timestamptz_send(ts)`.
    # Rewritten whole by each fold of one of its 15-minute buckets; events of a bucket that
    # still has `client_sets` rows are read raw beside it.
    Column("events", LargeBinary, nullable=False),
)
