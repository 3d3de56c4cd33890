"""Writing events: the one statement that inserts events and updates the rollups together
(validation is `parsing` and `fastpath`; partitions are `partitions`).

An event is identified by (tenant, id, timestamp), as PostHog does: a resend repeats both, and
the unique index `(tenant_id, id, ts)` of the events (unique together with the partition key,
as a partitioned table requires) makes a resend — even a concurrent one — a duplicate, never
a second count. The batch path COPYs into a session temp table (PostgreSQL refuses COPY into a
table with row-level security for a role subject to it), then one `INSERT ... SELECT` moves
the rows on: row-level security checks every row there, and only the events inserted are
rolled up. Rows go in ordered by identity, so overlapping concurrent batches wait on each other
in one order and never deadlock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.analytics.client_sets import FOLD_ALL
from core.analytics.fastpath import FastBatch
from core.analytics.models import GRAINS, PARTITIONS_SCHEMA, ROLLUP_PROPERTIES
from core.analytics.parsing import Row
from core.uow import UnitOfWork

SMALL_BATCH = 100

_TEMP = text(
    "CREATE TEMP TABLE IF NOT EXISTS analytics_ingest (idx integer, id text, ts timestamptz, name text,"
    " client_id text, source text, properties jsonb) ON COMMIT DELETE ROWS"
)
_FROM_TEMP = (
    "SELECT idx, CAST(id AS uuid) AS id, ts, name, client_id, source, properties"
    " FROM pg_temp.analytics_ingest"
)
_FROM_PARAMS = (
    "SELECT * FROM unnest(CAST(:idx AS integer[]), CAST(:ids AS uuid[]), CAST(:ts AS timestamptz[]),"
    " CAST(:names AS text[]), CAST(:clients AS text[]), CAST(:sources AS text[]),"
    " CAST(:props AS jsonb[])) AS s(idx, id, ts, name, client_id, source, properties)"
)
# The rollup rows of events: one per (tenant, grain, name, bucket, member); the same SQL
# maintains the rollup at ingest and rebuilds it (benchmarks), from a relation `{events}`
# with tenant_id, name, ts and person_id.
GRAIN_VALUES = ", ".join(f"({g})" for g in GRAINS)
ORIGIN = "TIMESTAMPTZ '2000-01-01 00:00:00+00'"
ROLLUP_ROWS = (
    "SELECT tenant_id, g.grain, name,"
    f" date_bin(make_interval(mins => g.grain), ts, {ORIGIN}) AS bucket,"
    " person_id, {shard} AS shard, count(*) AS n"
    f" FROM {{events}} CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain) GROUP BY 1, 2, 3, 4, 5"
)
_INSERT = """
WITH src AS ({source}),
ins AS (
  INSERT INTO analytics.events AS e (id, ts, name, client_id, source, properties, person_id, org_id)
  SELECT s.id, s.ts, s.name, s.client_id, s.source, s.properties, CAST(:person AS uuid), CAST(:org AS uuid)
  FROM src s ORDER BY s.id, s.ts
  {conflict}
  RETURNING e.id, tenant_id, name, ts, person_id, client_id, properties
),
{rollups}
SELECT (SELECT count(*) FROM ins) AS accepted, (SELECT count(*) FROM rolled) AS groups,
       ARRAY(SELECT s.idx FROM src s WHERE NOT EXISTS (SELECT 1 FROM ins i WHERE i.id = s.id)
             ORDER BY s.idx) AS duplicates
"""
SHARDS = 8
# At ingest: counted once per finest bucket first (a hash aggregate over the batch), then each
# grain from those few groups, instead of sorting every event once per grain. Every grain is
# a multiple of the finest and all share the origin, so a coarse bucket of a fine bucket is the
# coarse bucket of the event itself: the same counts.
_FINEST = min(GRAINS)
assert all(g % _FINEST == 0 for g in GRAINS)
_ROLLUP = (
    "SELECT tenant_id, g.grain, name,"
    f" date_bin(make_interval(mins => g.grain), f.bucket, {ORIGIN}) AS bucket,"
    f" person_id, pg_backend_pid() % {SHARDS} AS shard, sum(f.n) AS n"
    f" FROM (SELECT tenant_id, name, person_id, count(*) AS n,"
    f" date_bin(make_interval(mins => {_FINEST}), ts, {ORIGIN}) AS bucket"
    " FROM ins GROUP BY tenant_id, name, person_id, bucket) AS f"
    f" CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain) GROUP BY 1, 2, 3, 4, 5"
)
# The rolled-up properties of events: grouped by each kept key's value first (`->` gives SQL
# NULL when a key is absent, JSON null when it is null), the projection built once per group:
# the same values as `analytics.rollup_properties(properties)`, at half the cost per row.
_KEYS = sorted(ROLLUP_PROPERTIES)
_KEY_VALUES = ", ".join(f"properties -> '{k}' AS k{i}" for i, k in enumerate(_KEYS))
_KEY_GROUP = ", ".join(str(5 + i) for i in range(len(_KEYS)))
_PROJECTION = " || ".join(
    f"CASE WHEN k{i} IS NULL THEN CAST('{{}}' AS jsonb) ELSE jsonb_build_object('{k}', k{i}) END"
    for i, k in enumerate(_KEYS)
)


def property_rollup_rows(events: str, shard: str) -> str:
    """Rows of `property_counts` for the events of relation `events` (tenant_id, name, ts,
    properties), every grain, in stripe `shard` (an SQL expression)."""
    return (
        "SELECT tenant_id, g.grain, name,"
        f" date_bin(make_interval(mins => g.grain), f.bucket, {ORIGIN}) AS bucket,"
        f" {_PROJECTION} AS props, {shard} AS shard, sum(f.n) AS n"
        f" FROM (SELECT tenant_id, name, date_bin(make_interval(mins => {_FINEST}), ts, {ORIGIN}) AS bucket,"
        f" count(*) AS n, {_KEY_VALUES} FROM {events} GROUP BY 1, 2, 3, {_KEY_GROUP}) AS f"
        f" CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain) GROUP BY 1, 2, 3, 4, 5"
    )


_PROPERTY_ROLLUP = property_rollup_rows("ins", f"pg_backend_pid() % {SHARDS}")
# The three rollups of the inserted events (`ins`), as CTEs of the ingest statement: counts per
# member, counts per rolled-up properties (both striped, see `models.counts`), and the set of
# clients of each 15-minute bucket — appended, never updated: a set is read as the union of its
# rows, so a concurrent batch or a late event adds a row and nothing waits on a lock.
ROLLUPS = f"""rolled AS (
  INSERT INTO analytics.counts AS c (tenant_id, grain, name, bucket, person_id, shard, n)
  {_ROLLUP} ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, person_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n
  RETURNING 1
),
props_rolled AS (
  INSERT INTO analytics.property_counts AS c (tenant_id, grain, name, bucket, props, shard, n)
  {_PROPERTY_ROLLUP} ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, props, shard) DO UPDATE SET n = c.n + EXCLUDED.n
  RETURNING 1
),
sets AS (
  INSERT INTO analytics.client_sets (tenant_id, name, bucket, clients)
  SELECT tenant_id, name, date_bin(make_interval(mins => {_FINEST}), ts, {ORIGIN}),
         array_agg(DISTINCT client_id COLLATE "C")
    FROM ins WHERE client_id IS NOT NULL GROUP BY 1, 2, 3
  RETURNING 1
)"""
ROLLUP_TABLES = (
    "counts",
    "property_counts",
    "client_sets",
    "client_ids",
    "client_id_sets",
    "client_timelines",
)
# Every rollup rebuilt from `analytics.events` (benchmarks load events by SQL, then run these;
# migration analytics_0002 backfilled the same way), the client sets folded as the compaction
# job folds them (see `client_sets`).
REBUILD = (
    "INSERT INTO analytics.counts (tenant_id, grain, name, bucket, person_id, shard, n) "
    + ROLLUP_ROWS.format(shard="0", events="analytics.events"),
    "INSERT INTO analytics.property_counts (tenant_id, grain, name, bucket, props, shard, n) "
    + property_rollup_rows("analytics.events", "0"),
    "INSERT INTO analytics.client_sets (tenant_id, name, bucket, clients)"
    f" SELECT tenant_id, name, date_bin(make_interval(mins => {_FINEST}), ts, {ORIGIN}),"
    ' array_agg(DISTINCT client_id COLLATE "C") FROM analytics.events'
    " WHERE client_id IS NOT NULL GROUP BY 1, 2, 3",
    *FOLD_ALL,
)
_SKIP = "ON CONFLICT (tenant_id, id, ts) DO NOTHING"
INSERT_FROM_TEMP = text(_INSERT.format(source=_FROM_TEMP, rollups=ROLLUPS, conflict=_SKIP))
# Ids are new in all but resends: a plain insert skips the speculative-insertion work of
# ON CONFLICT, and a conflict (a resend, or a concurrent one) redoes it the careful way.
# In that case every event is new: the temp table read as is. The main query reads `rolled`
# after `ins`, as `_INSERT`'s does, so the counts are written before the property counts (which
# nobody reads, so they run after it): unread, `rolled` ran last, and a large batch locked the
# property counts first, the order that deadlocks with the other paths on a shared stripe
# (tests/core/analytics/test_rollup_lock_order.py).
INSERT_NEW_FROM_TEMP = text(
    f"""
WITH ins AS (
  INSERT INTO analytics.events (id, ts, name, client_id, source, properties, person_id, org_id)
  SELECT CAST(id AS uuid), ts, name, client_id, source, properties, CAST(:person AS uuid), CAST(:org AS uuid)
  FROM pg_temp.analytics_ingest ORDER BY 1, 2
  RETURNING tenant_id, name, ts, person_id, client_id, properties
),
{ROLLUPS}
SELECT (SELECT count(*) FROM ins) AS accepted, (SELECT count(*) FROM rolled) AS groups,
       CAST(ARRAY[] AS integer[]) AS duplicates
"""
)
# The fast path (`fast_batch`): every column as one text (`batch_columns`), the properties one
# JSON array, no COPY. A batch of one event without a client id (or source) sends `''`, which
# splits into no element: ROWS FROM pads the shorter set with NULL, which is the value meant.
# Same inserts, same row-level security; the rollups' groups were counted from the decoded
# batch (`batch_rollups`: every event is inserted, or none is). Nothing is returned: a plain
# insert without triggers stores every row or fails, so the count is the batch's (RETURNING
# kept a 10,000-row tuple store for a count known in advance). The events' insert is the
# statement itself, so it runs first, and the rollups' CTEs after it (PostgreSQL runs the
# CTEs nobody reads after the main query, the last written first), as in the careful path's
# statements: every writer locks its events' keys before any rollup row, so overlapping
# batches on a shared rollup stripe never wait on each other in a cycle (with the client sets
# as the statement, the rollups ran first: a deadlock with a concurrent resend). For the same
# reason the counts are written before the property counts, as the careful path writes them
# (its main query reads `rolled`; the property counts run after it): `props_rolled` is written
# before `rolled` here so that it runs after it (the other order deadlocked a fast batch with
# a concurrent resend on the careful path when both backends shared a stripe).
_GROUPS = (
    "unnest(CAST(:r_names AS text[]), CAST(:r_buckets AS timestamptz[]), CAST(:r_counts AS bigint[]),"
    " CAST(:r_clients AS text[])) AS f(name, bucket, n, clients)"
)
_PROP_GROUPS = (
    "unnest(CAST(:p_names AS text[]), CAST(:p_buckets AS timestamptz[]), CAST(:p_props AS jsonb[]),"
    " CAST(:p_counts AS bigint[])) AS f(name, bucket, props, n)"
)
INSERT_NEW_FROM_ARRAYS = text(
    f"""
WITH src AS (
  SELECT * FROM ROWS FROM (unnest(CAST(string_to_array(:ids, ',') AS uuid[])),
                          unnest(CAST(string_to_array(:ts, ',') AS timestamptz[])),
                          unnest(string_to_array(:names, ',')), unnest(string_to_array(:clients, ',', '')),
                          unnest(string_to_array(:sources, ',', '')),
                          jsonb_array_elements(CAST(:props AS jsonb)))
    AS s(id, ts, name, client_id, source, properties)
),
props_rolled AS (
  INSERT INTO analytics.property_counts AS c (tenant_id, grain, name, bucket, props, shard, n)
  SELECT CAST(:tenant AS uuid), g.grain, f.name, date_bin(make_interval(mins => g.grain), f.bucket, {ORIGIN}),
         f.props, pg_backend_pid() % {SHARDS}, sum(f.n)
    FROM {_PROP_GROUPS} CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain)
   GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, props, shard) DO UPDATE SET n = c.n + EXCLUDED.n
),
rolled AS (
  INSERT INTO analytics.counts AS c (tenant_id, grain, name, bucket, person_id, shard, n)
  SELECT CAST(:tenant AS uuid), g.grain, f.name, date_bin(make_interval(mins => g.grain), f.bucket, {ORIGIN}),
         CAST(:person AS uuid), pg_backend_pid() % {SHARDS}, sum(f.n)
    FROM {_GROUPS} CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain)
   GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, person_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n
),
sets AS (
  INSERT INTO analytics.client_sets (tenant_id, name, bucket, clients)
  SELECT CAST(:tenant AS uuid), f.name, f.bucket, string_to_array(f.clients, ',')
    FROM {_GROUPS} WHERE f.clients IS NOT NULL
)
INSERT INTO analytics.events (id, ts, name, client_id, source, properties, person_id, org_id)
SELECT id, ts, name, client_id, COALESCE(source, CAST(:source AS text)), properties,
       CAST(:person AS uuid), CAST(:org AS uuid)
  FROM src ORDER BY 1, 2
"""
)
INSERT_FROM_PARAMS = text(_INSERT.format(source=_FROM_PARAMS, rollups=ROLLUPS, conflict=_SKIP))


def _id_conflict(err: IntegrityError) -> bool:
    """A unique violation on the events (their only unique index is the event's identity,
    `(tenant_id, id, ts)`; the partition's index is the one named)."""
    causes = (err.orig, getattr(err.orig, "__cause__", None))
    return any(
        getattr(c, "sqlstate", None) == "23505"
        and getattr(c, "schema_name", None) == PARTITIONS_SCHEMA
        and str(getattr(c, "table_name", "")).startswith("events_")
        for c in causes
    )


async def insert_fast(
    uow: UnitOfWork,
    batch: FastBatch,
    *,
    source: str,
    person_id: uuid.UUID,
    org_id: uuid.UUID | None,
) -> int | None:
    """Insert a `fast_batch` whose ids are all new; returns how many were stored, or None when
    one was recorded before (a resend): the savepoint is undone and the caller takes the
    careful path, which tells duplicates apart."""
    params = {
        **batch.columns,
        "source": source,
        "tenant": org_id or person_id,
        "person": person_id,
        "org": org_id,
        **batch.rollups.params(),
    }
    try:
        async with uow.session.begin_nested():
            await uow.session.execute(INSERT_NEW_FROM_ARRAYS, params)
    except IntegrityError as err:
        if not _id_conflict(err):
            raise
        return None
    return batch.size


@dataclass(frozen=True)
class Stored:
    accepted: int
    duplicates: list[int]  # batch indexes of events stored before (same id and timestamp)


async def insert(
    uow: UnitOfWork, rows: list[Row], *, person_id: uuid.UUID, org_id: uuid.UUID | None
) -> Stored:
    """Insert rows (ids unique within `rows`) for one context; the rollup follows in the same
    statement. Large batches go through COPY, small ones as array parameters."""
    if not rows:
        return Stored(0, [])
    params: dict[str, Any] = {
        "tenant": org_id or person_id,
        "person": person_id,
        "org": org_id,
    }
    if len(rows) <= SMALL_BATCH:
        params.update(
            idx=[r.idx for r in rows],
            ids=[r.id for r in rows],
            ts=[r.ts for r in rows],
            names=[r.name for r in rows],
            clients=[r.client_id for r in rows],
            sources=[r.source for r in rows],
            props=[r.properties for r in rows],
        )
        result = (await uow.session.execute(INSERT_FROM_PARAMS, params)).one()
    else:
        await uow.session.execute(_TEMP)
        conn = await uow.session.connection()
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(
            "analytics_ingest",
            schema_name="pg_temp",
            columns=("idx", "id", "ts", "name", "client_id", "source", "properties"),
            records=rows,
        )
        try:
            async with uow.session.begin_nested():
                result = (await uow.session.execute(INSERT_NEW_FROM_TEMP, params)).one()
        except IntegrityError as err:
            if not _id_conflict(err):
                raise
            result = (await uow.session.execute(INSERT_FROM_TEMP, params)).one()
    return Stored(int(result.accepted), list(result.duplicates or []))
