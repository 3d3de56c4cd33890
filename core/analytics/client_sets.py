"""Distinct clients per bucket from the per-bucket client sets (`client_sets`): exact unions of
small sets instead of a distinct count over the raw events.

A 15-minute bucket's set is the union of its rows (ingest appends one per batch; a resend adds
nothing, a repeat within a set changes nothing), so the answer never depends on how the rows are
split. The slivers of the range off the 15-minute grid are read from the raw events.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import text

from core.analytics._queries import fetch_rows
from core.analytics.timebuckets import Range, ceil15, floor15
from core.uow import UnitOfWork

__all__ = ["compact_client_sets", "unique_clients"]

# Per (event, bucket) one text of all its client ids, comma-separated (a client id has no
# comma): one string to decode per bucket instead of one per client, split in C. The sets'
# rows for the grid, the raw events for the slivers off it (empty ranges when none), together.
_CLIENTS = (
    "SELECT name, b, string_agg(clients, ',') AS clients FROM ("
    " SELECT name, width_bucket(bucket, CAST(:th AS timestamptz[])) - 1 AS b,"
    " array_to_string(clients, ',') AS clients FROM analytics.client_sets"
    " WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND bucket >= :a AND bucket < :b"
    " UNION ALL"
    " SELECT name, width_bucket(ts, CAST(:th AS timestamptz[])) - 1, client_id FROM analytics.events"
    " WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND client_id IS NOT NULL"
    " AND ((ts >= :start AND ts < :a) OR (ts >= :b AND ts < :end))"
    ") AS parts GROUP BY 1, 2"
)

Counts = dict[tuple[str, int], int]


async def unique_clients(
    uow: UnitOfWork, tenant: uuid.UUID, names: list[str], rng: Range, th: list[dt.datetime]
) -> tuple[Counts, dict[str, int], bool]:
    """Distinct clients per (event, bucket index) and per event over the whole range, and
    whether raw events were read (the range has slivers off the grid). Bucket starts `th` lie
    on the 15-minute grid."""
    a, b = ceil15(rng.start), floor15(rng.end)
    params: dict[str, Any] = {
        "tenant": tenant,
        "names": names,
        "th": th,
        "a": a,
        "b": b,
        "start": rng.start,
        "end": rng.end,
    }
    sets = {(row.name, row.b): set(row.clients.split(",")) for row in await fetch_rows(uow, _CLIENTS, params)}
    per_name: dict[str, list[set[str]]] = defaultdict(list)
    for (name, _), clients in sets.items():
        per_name[name].append(clients)
    return (
        {key: len(clients) for key, clients in sets.items()},
        {name: len(set().union(*parts)) for name, parts in per_name.items()},
        rng.start < a or b < rng.end,
    )


# Buckets whose rows are merged: closed ones (no batch of live traffic is still adding to them
# as a rule, though a late one may: it only adds a row, merged next time).
_COMPACT = text(
    """
WITH many AS (
  SELECT tenant_id, name, bucket FROM analytics.client_sets
   WHERE bucket < :before GROUP BY 1, 2, 3 HAVING count(*) > 1 LIMIT :limit
),
gone AS (
  DELETE FROM analytics.client_sets s USING many m
   WHERE s.tenant_id = m.tenant_id AND s.name = m.name AND s.bucket = m.bucket
  RETURNING s.tenant_id, s.name, s.bucket, s.clients
)
INSERT INTO analytics.client_sets (tenant_id, name, bucket, clients)
SELECT tenant_id, name, bucket, array_agg(DISTINCT c COLLATE "C")
  FROM gone, unnest(clients) AS c GROUP BY 1, 2, 3
"""
)


async def compact_client_sets(uow: UnitOfWork, before: dt.datetime, limit: int = 10_000) -> int:
    """Merge the rows of up to `limit` buckets that started before `before` into one row each;
    returns how many buckets were merged. Safe beside ingest and another compaction: rows are
    deleted and their union inserted in one statement, and a set is read as a union anyway."""
    result = await uow.session.execute(_COMPACT, {"before": before, "limit": limit})
    return int(getattr(result, "rowcount", 0) or 0)
