"""Distinct clients per bucket: exact unions of per-bucket client sets instead of a distinct
count over the raw events.

Ingest appends, per batch and 15-minute bucket, one row of client ids as sent (`client_sets`);
it assigns nothing, so it costs what it cost before. Every few minutes `compact_client_sets`
folds the rows of closed buckets into a per-tenant dictionary of client ids (`client_ids`:
dense integers) and the same sets coded as those integers (`client_id_sets`: 4 bytes per
client, big-endian), in one transaction. A bucket's set is the union of its coded rows and of
its rows still in `client_sets` (the last minutes, or a late event for an old bucket): a late
event only adds a row, folded by the next run, and never makes a stored answer stale.

A reader gets, per (event, bucket), one byte string of dictionary ids (the coded rows, plus
the text rows and the raw slivers off the 15-minute grid looked up in the dictionary, in the
same statement and so the same snapshot) and the few ids that have no dictionary entry yet.
Those are clients no coded row holds (a coded id always has its entry, written in the same
transaction), so the two parts never overlap and their counts add up. The ids are counted by
numpy in C: the sets of a month are ~120k ids, which as Python objects cost ~50 ms to hash.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import text

from core.analytics._queries import fetch_rows
from core.analytics.timebuckets import Range, ceil15, floor15
from core.analytics.timelines import FOLD_TIMELINES, id_of
from core.uow import UnitOfWork

__all__ = ["FOLD_ALL", "compact_client_sets", "unique_clients"]

_ID = np.dtype(">u4")  # int4send: a dictionary id as 4 big-endian bytes
_EMPTY: npt.NDArray[np.uint32] = np.zeros(0, dtype=np.uint32)

# Per (event, bucket): the dictionary ids of the coded rows, of the text rows and of the raw
# slivers (empty ranges when none), concatenated; and the client ids not in the dictionary.
# Bucket starts `th` lie on the 15-minute grid.
_LOOKUP = " LEFT JOIN analytics.client_ids d ON d.tenant_id = :tenant AND d.client_id = {client}"
_CLIENTS = (
    "SELECT name, b, string_agg(ids, CAST('' AS bytea)) AS ids,"
    " array_agg(client_id) FILTER (WHERE client_id IS NOT NULL) AS unknown FROM ("
    " SELECT name, width_bucket(bucket, CAST(:th AS timestamptz[])) - 1 AS b, ids,"
    " CAST(NULL AS text) AS client_id FROM analytics.client_id_sets"
    " WHERE tenant_id = :tenant AND name = ANY(CAST(:names AS text[])) AND bucket >= :a AND bucket < :b"
    " UNION ALL"
    " SELECT s.name, width_bucket(s.bucket, CAST(:th AS timestamptz[])) - 1, int4send(d.id),"
    " CASE WHEN d.id IS NULL THEN c.client_id END"
    " FROM analytics.client_sets s CROSS JOIN unnest(s.clients) AS c(client_id)"
    + _LOOKUP.format(client="c.client_id")
    + " WHERE s.tenant_id = :tenant AND s.name = ANY(CAST(:names AS text[]))"
    " AND s.bucket >= :a AND s.bucket < :b"
    " UNION ALL"
    " SELECT e.name, width_bucket(e.ts, CAST(:th AS timestamptz[])) - 1, int4send(d.id),"
    " CASE WHEN d.id IS NULL THEN e.client_id END FROM analytics.events e"
    + _LOOKUP.format(client="e.client_id")
    + " WHERE e.tenant_id = :tenant AND e.name = ANY(CAST(:names AS text[])) AND e.client_id IS NOT NULL"
    " AND ((e.ts >= :start AND e.ts < :a) OR (e.ts >= :b AND e.ts < :end))"
    ") AS parts GROUP BY 1, 2"
)

Counts = dict[tuple[str, int], int]


def _distinct(ids: npt.NDArray[np.uint32]) -> int:
    """How many distinct numbers `ids` holds: sorted, in C (`np.unique` measured 25x slower)."""
    if not ids.size:
        return 0
    ordered = np.sort(ids)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1


def _union_size(ids: list[npt.NDArray[np.uint32]]) -> int:
    """How many distinct numbers the arrays hold together: marks in a table as long as the
    highest number (the tenant's dictionary at most, a byte per client), counted in C."""
    every = np.concatenate(ids) if ids else _EMPTY
    if not every.size:
        return 0
    seen = np.zeros(int(every.max()) + 1, dtype=np.bool_)
    seen[every] = True
    return int(np.count_nonzero(seen))


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
    per_bucket: Counts = {}
    coded: dict[str, list[npt.NDArray[np.uint32]]] = defaultdict(list)
    unknown: dict[str, set[str]] = defaultdict(set)
    for row in await fetch_rows(uow, _CLIENTS, params):
        ids = np.frombuffer(row.ids or b"", dtype=_ID).astype(np.uint32)
        new = set(row.unknown or ())
        per_bucket[(row.name, row.b)] = _distinct(ids) + len(new)
        coded[row.name].append(ids)
        unknown[row.name] |= new
    totals = {name: _union_size(ids) + len(unknown[name]) for name, ids in coded.items()}
    return per_bucket, totals, rng.start < a or b < rng.end


def _number(picked: str) -> str:
    """The statement numbering the clients of the `client_sets` rows of the buckets `picked` (a
    query of tenant_id, name, bucket) that the dictionary has not numbered yet: after the
    tenant's highest id, so the ids stay dense. The caller holds `_DICTIONARY_LOCK`, the
    dictionary's only writer. The highest id is read once per tenant, before the first insert
    (`tops`): asked per new client, each backward index scan stepped over every entry the
    statement had inserted so far (invisible to its own snapshot), quadratic in the new clients
    (42 s for 24k of them)."""
    return f"""
WITH picked AS ({picked}),
seen AS (
  SELECT DISTINCT s.tenant_id, c.client_id
    FROM analytics.client_sets s JOIN picked p
      ON s.tenant_id = p.tenant_id AND s.name = p.name AND s.bucket = p.bucket
   CROSS JOIN unnest(s.clients) AS c(client_id)
),
tops AS MATERIALIZED (
  SELECT t.tenant_id,
         COALESCE((SELECT max(d.id) FROM analytics.client_ids d WHERE d.tenant_id = t.tenant_id), -1) AS top
    FROM (SELECT DISTINCT tenant_id FROM seen) AS t
)
INSERT INTO analytics.client_ids (tenant_id, client_id, id)
SELECT n.tenant_id, n.client_id,
       t.top + row_number() OVER (PARTITION BY n.tenant_id ORDER BY n.client_id COLLATE "C")
  FROM seen n JOIN tops t ON t.tenant_id = n.tenant_id
 WHERE {id_of("n.tenant_id", "n.client_id")} IS NULL
"""


def _fold(picked: str) -> str:
    """The statement folding the `client_sets` rows of the buckets `picked` into the coded sets
    and the buckets' timelines (`timelines`), once `_number` has numbered their clients; it
    answers the number of buckets folded. Every lookup is into the dictionary's table, by its
    index: joining the rows to entries made in the same statement (a CTE, which PostgreSQL
    believes holds a handful of rows) was planned as a nested loop, quadratic in the clients,
    and so was a join to the dictionary itself while its statistics were missing (`id_of`).
    A row with a client the dictionary does not have (a batch that came after `_number`) stays,
    for the next run."""
    return f"""
WITH picked AS ({picked}),
gone AS (
  DELETE FROM analytics.client_sets s USING picked p
   WHERE s.tenant_id = p.tenant_id AND s.name = p.name AND s.bucket = p.bucket
     AND NOT EXISTS (SELECT 1 FROM unnest(s.clients) AS c(client_id)
                      WHERE {id_of("s.tenant_id", "c.client_id")} IS NULL)
  RETURNING s.tenant_id, s.name, s.bucket, s.clients
),
members AS (
  SELECT DISTINCT g.tenant_id, g.name, g.bucket, {id_of("g.tenant_id", "c.client_id")} AS id
    FROM gone g CROSS JOIN unnest(g.clients) AS c(client_id)
),
coded AS (
  INSERT INTO analytics.client_id_sets (tenant_id, name, bucket, ids)
  SELECT tenant_id, name, bucket, string_agg(int4send(id), CAST('' AS bytea) ORDER BY id)
    FROM members GROUP BY 1, 2, 3
  RETURNING 1
),{FOLD_TIMELINES}
SELECT count(*) FROM coded
"""


# One writer of the dictionary at a time: two folds numbering new clients from the same
# highest id would collide. Ingest never takes it.
_DICTIONARY_LOCK = text("SELECT pg_advisory_xact_lock(hashtext('analytics.client_ids'))")
# Closed buckets, oldest first (no batch of live traffic is still adding to them as a rule,
# though a late one may: it only adds a text row, folded next time). Ordered, so that numbering
# and folding pick the same buckets.
_CLOSED = (
    "SELECT tenant_id, name, bucket FROM analytics.client_sets WHERE bucket < :before"
    " GROUP BY 1, 2, 3 ORDER BY 3, 1, 2 LIMIT :limit"
)
_NUMBER = text(_number(_CLOSED))
_COMPACT = text(_fold(_CLOSED))
# Every bucket, open ones too (a later row is read as text, then folded): for a rebuild.
_EVERY = "SELECT DISTINCT tenant_id, name, bucket FROM analytics.client_sets"
FOLD_ALL = (_number(_EVERY), _fold(_EVERY))


async def compact_client_sets(uow: UnitOfWork, before: dt.datetime, limit: int = 10_000) -> int:
    """Fold the rows of up to `limit` buckets that started before `before` into the coded sets;
    returns how many buckets were folded. Safe beside ingest, readers and another compaction:
    rows are deleted and their coded union inserted in one statement (a row a batch adds
    meanwhile stays, for the next run), and readers take the union of both tables."""
    await uow.session.execute(_DICTIONARY_LOCK)
    picked = {"before": before, "limit": limit}
    await uow.session.execute(_NUMBER, picked)
    result = await uow.session.execute(_COMPACT, picked)
    return int(result.scalar_one())
