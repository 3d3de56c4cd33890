"""The rollups behind fast answers stay exact: distinct clients from the per-bucket client sets
and property breakdowns from the property rollup equal the raw events' answers after concurrent
batches full of resends, before and after the client sets are folded into the dictionary."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from core.analytics.client_sets import compact_client_sets
from core.analytics.timebuckets import aligned
from core.uow import Database
from tests.conftest import signup
from tests.core.analytics.support import sql

PATHS = ["/", "/pricing", "/book", "/blog", "/about"]


def _events(rng: random.Random, start: dt.datetime, count: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        ts = start + dt.timedelta(seconds=rng.randrange(3 * 86_400))
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": rng.choice(["page_view", "page_view", "signup"]),
            "timestamp": ts.isoformat(),
            "properties": {"plan": rng.choice(["free", "pro", "team"]), "path": rng.choice(PATHS)},
        }
        if rng.random() < 0.9:  # some events carry no client
            event["client_id"] = f"c{rng.randrange(40)}"
        if rng.random() < 0.1:
            event["properties"]["amount"] = rng.randrange(100)  # a key the rollup leaves out
        out.append(event)
    return out


async def _ingest_concurrently(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Batches of both insert paths (arrays up to 100 events, more through COPY or the JSON
    statement) sent at once, half of them overlapping others: resends racing first sends."""
    rng = random.Random(19)
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=3, minutes=7)
    pool = _events(rng, start, 1500)
    slices = [(0, 400), (300, 700), (650, 1200), (1100, 1500), (0, 80), (60, 140), (1400, 1500), (0, 1500)]
    results = await asyncio.gather(
        *(
            client.post("/v1/analytics/events", json={"events": pool[lo:hi]}, headers=headers)
            for lo, hi in slices
        )
    )
    assert all(r.status_code == 200 for r in results), [r.text[:300] for r in results]
    assert sum(r.json()["accepted"] for r in results) == len(pool)


def _path_ending_now(out: dict[str, Any]) -> str:
    """What a period ending now is computed from: the rollup plus raw slivers off its 15-minute
    grid, or the rollup alone in the one second of 900 when now falls on that grid."""
    s, e = (dt.datetime.fromisoformat(out["query"]["range"][k]) for k in ("start", "end"))
    return "rollup" if aligned(s) and aligned(e) else "rollup+raw"


async def _trends(client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v1/analytics/trends", json=body, headers=headers)
    assert r.status_code == 200, r.text[:500]
    return dict(r.json())


async def _naive_uniques(
    db: Database, tenant: str, tz: str, interval: str, out: dict[str, Any]
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    where = "tenant_id = CAST(:t AS uuid) AND ts >= :s AND ts < :e AND client_id IS NOT NULL"
    rows = await sql(
        db,
        f"SELECT name, date_trunc(:i, ts AT TIME ZONE :tz) AS d, count(DISTINCT client_id)"
        f" FROM analytics.events WHERE {where} GROUP BY 1, 2",
        t=tenant, s=s, e=e, i=interval, tz=tz,
    )  # fmt: skip
    totals = await sql(
        db, f"SELECT name, count(DISTINCT client_id) FROM analytics.events WHERE {where} GROUP BY 1",
        t=tenant, s=s, e=e,
    )  # fmt: skip
    return {(r[0], r[1].isoformat()): int(r[2]) for r in rows}, {r[0]: int(r[1]) for r in totals}


def _by_local_start(out: dict[str, Any], tz: str, key: Any) -> dict[Any, int]:
    zone = ZoneInfo(tz)
    return {
        (key(s), dt.datetime.fromisoformat(b).astimezone(zone).replace(tzinfo=None).isoformat()): v
        for s in out["series"]
        for b, v in zip(out["buckets"], s["values"], strict=True)
        if v
    }


@pytest.mark.parametrize(
    ("tz", "interval"), [("UTC", "hour"), ("Asia/Kolkata", "day"), ("Europe/Paris", "day")]
)
async def test_unique_clients_from_client_sets_equal_raw_after_concurrent_resends(
    client: httpx.AsyncClient, db: Database, tz: str, interval: str
) -> None:
    a = await signup(client)
    await _ingest_concurrently(client, a.h())
    body = {"events": ["page_view", "signup"], "measure": "unique_clients", "interval": interval,
            "time_zone": tz, "period": "last_7_days"}  # fmt: skip
    assert await _set_rows(db, a.id) == "several rows per bucket"  # a row per batch and bucket
    for _ in range(2):  # as ingested, then folded into the dictionary
        out = await _trends(client, a.h(), body)
        per_bucket, totals = await _naive_uniques(db, a.id, tz, interval, out)
        assert out["computed_from"] == _path_ending_now(out)
        assert _by_local_start(out, tz, lambda s: s["event"]) == per_bucket
        assert {s["event"]: s["total"] for s in out["series"]} == totals
        async with db.system() as uow:
            await compact_client_sets(uow, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert await _set_rows(db, a.id) == "folded"


async def _set_rows(db: Database, tenant: str) -> str:
    (rows, buckets, coded), *_ = await sql(
        db, "SELECT count(*), count(DISTINCT (name, bucket)),"
        " (SELECT count(*) FROM analytics.client_id_sets WHERE tenant_id = CAST(:t AS uuid))"
        " FROM analytics.client_sets WHERE tenant_id = CAST(:t AS uuid)", t=tenant,
    )  # fmt: skip
    if rows == 0 and coded > 0:
        return "folded"
    return "one row per bucket" if rows == buckets else "several rows per bucket"


async def test_property_breakdown_from_the_rollup_equals_raw(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    await _ingest_concurrently(client, a.h())
    body = {"events": ["page_view"], "filters": ["plan = pro"], "breakdown": "path", "breakdown_limit": 3,
            "interval": "day", "time_zone": "Europe/Paris", "period": "last_7_days"}  # fmt: skip
    out = await _trends(client, a.h(), body)
    assert out["computed_from"] == _path_ending_now(out)
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    rows = await sql(
        db,
        "WITH ev AS (SELECT properties ->> 'path' AS v, date_trunc('day', ts AT TIME ZONE 'Europe/Paris') AS d"
        " FROM analytics.events WHERE tenant_id = CAST(:t AS uuid) AND name = 'page_view'"
        " AND ts >= :s AND ts < :e AND properties ->> 'plan' = 'pro'),"
        ' top AS (SELECT v FROM ev GROUP BY v ORDER BY count(*) DESC, v COLLATE "C" NULLS LAST LIMIT 3)'
        " SELECT CASE WHEN v IN (SELECT v FROM top) THEN v ELSE '(other)' END, d, count(*) FROM ev GROUP BY 1, 2",
        t=a.id, s=s, e=e,
    )  # fmt: skip
    expected = {(r[0], r[1].isoformat()): int(r[2]) for r in rows}
    got = _by_local_start(
        out, "Europe/Paris", lambda s: "(other)" if s["is_other"] else s["untrusted_breakdown_value"]
    )
    assert got == expected and len({k[0] for k in got}) == 4
    # A key the rollup leaves out is answered from the events, the same way.
    amount = await _trends(client, a.h(), {**body, "filters": ["amount > 50"]})
    assert amount["computed_from"] == "raw"


async def test_a_rolled_up_key_holding_a_boolean_or_a_float_is_rolled_up_exactly(
    client: httpx.AsyncClient, db: Database
) -> None:
    """`true` and `1` are equal Python keys: such a batch is stored the per-item way and its
    rollup computed in SQL, where they stay apart."""
    a = await signup(client)
    t = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    values: list[Any] = [True, 1, "1", 1.5, None, False, 0]
    batch = [
        {"id": str(uuid.uuid4()), "name": "tap", "timestamp": t.isoformat(), "properties": {"plan": v}}
        for v in values
    ]
    r = await client.post("/v1/analytics/events", json={"events": batch}, headers=a.h())
    assert r.status_code == 200 and r.json()["accepted"] == len(values)
    rows = await sql(
        db, "SELECT props, n FROM analytics.property_counts WHERE tenant_id = CAST(:t AS uuid) AND grain = 15",
        t=a.id,
    )  # fmt: skip
    assert sorted((str(p), n) for p, n in rows) == sorted((str({"plan": v}), 1) for v in values)
    for value, expected in (("true", 1), ("1", 2), ("1.5", 1)):
        out = await _trends(
            client, a.h(), {"events": ["tap"], "filters": [f"plan = {value}"], "period": "last_24_hours"}
        )
        assert out["computed_from"] == _path_ending_now(out) and out["series"][0]["total"] == expected, value
