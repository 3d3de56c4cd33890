"""Distinct clients from the coded client sets equal a naive count over the raw events, for
two tenants sharing client ids, in every zone shape (UTC, DST changes, half- and
three-quarter-hour offsets) and interval: as ingested (text rows only), folded into the
dictionary, with late events for folded buckets (coded rows beside text rows, clients the
dictionary has and has not seen), with folds racing batches, and folded again. The dictionary stays dense and per tenant,
and row-level security hides another tenant's."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from core.opener import open_context
from core.uow import Database
from tests.conftest import Account, make_org, signup
from tests.core.analytics.support import Ev, fold, org_id, put, sql, tenant_rows

UTC = dt.UTC
# Spans the DST changes of Paris (2026-10-25 01:00Z) and New York (2026-11-01 06:00Z).
START = dt.datetime(2026, 10, 20, tzinfo=UTC)
END = dt.datetime(2026, 11, 4, tzinfo=UTC)
NAMES = ["page_view", "signup"]
SHAPES = [
    ("UTC", "hour"),
    ("UTC", "day"),
    ("Europe/Paris", "day"),
    ("Europe/Paris", "hour"),
    ("Asia/Kolkata", "day"),
    ("Asia/Kathmandu", "hour"),
    ("America/New_York", "week"),
    ("Europe/Paris", "month"),
]
# Off the 15-minute grid at both ends (raw slivers), and on it.
RANGES = [
    (START + dt.timedelta(minutes=7, seconds=3), END - dt.timedelta(minutes=4)),
    (START, END),
]


def _events(rng: random.Random, count: int, clients: list[str]) -> list[Ev]:
    span = int((END - START).total_seconds())
    return [
        (
            rng.choice(NAMES),
            START + dt.timedelta(seconds=rng.randrange(span)),
            rng.choice(clients) if rng.random() < 0.9 else None,
            {},
        )
        for _ in range(count)
    ]


async def _naive(
    db: Database, tenant: str, tz: str, interval: str, s: dt.datetime, e: dt.datetime
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    where = "tenant_id = CAST(:t AS uuid) AND ts >= :s AND ts < :e AND client_id IS NOT NULL"
    rows = await sql(
        db,
        "SELECT name, date_trunc(:i, ts AT TIME ZONE :tz), count(DISTINCT client_id)"
        f" FROM analytics.events WHERE {where} GROUP BY 1, 2",
        t=tenant, s=s, e=e, i=interval, tz=tz,
    )  # fmt: skip
    totals = await sql(
        db,
        f"SELECT name, count(DISTINCT client_id) FROM analytics.events WHERE {where} GROUP BY 1",
        t=tenant, s=s, e=e,
    )  # fmt: skip
    return {(r[0], r[1].isoformat()): int(r[2]) for r in rows}, {r[0]: int(r[1]) for r in totals}


async def _check_all(
    client: httpx.AsyncClient, db: Database, tenants: list[tuple[str, dict[str, str]]]
) -> set[str]:
    """Every shape and range, for each tenant, equal to the naive count; returns the paths the
    answers were computed from."""
    paths: set[str] = set()
    for tenant, headers in tenants:
        for tz, interval in SHAPES:
            for s, e in RANGES:
                body = {"events": NAMES, "measure": "unique_clients", "interval": interval, "time_zone": tz,
                        "start": s.isoformat(), "end": e.isoformat()}  # fmt: skip
                r = await client.post("/v1/analytics/trends", json=body, headers=headers)
                assert r.status_code == 200, r.text[:500]
                out: dict[str, Any] = r.json()
                paths.add(out["computed_from"])
                per_bucket, totals = await _naive(db, tenant, tz, interval, s, e)
                zone = ZoneInfo(tz)
                got = {
                    (
                        series["event"],
                        dt.datetime.fromisoformat(b).astimezone(zone).replace(tzinfo=None).isoformat(),
                    ): v
                    for series in out["series"]
                    for b, v in zip(out["buckets"], series["values"], strict=True)
                    if v
                }
                assert got == per_bucket, (tenant, tz, interval, s)
                assert {series["event"]: series["total"] for series in out["series"]} == totals
    return paths


async def _fold(db: Database) -> None:
    await fold(db, END + dt.timedelta(days=1))


async def test_unique_clients_from_the_dictionary_equal_naive_through_folds_and_late_events(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner: Account = await signup(client, "dict")
    other: Account = await signup(client, "dict")
    org = await make_org(client, owner)
    oid = await org_id(client, owner, org)
    tenants = [(oid, owner.h(org=org)), (other.id, other.h())]
    rng = random.Random(19_2026)
    shared = [f"c{i}" for i in range(60)]  # the same ids in both tenants: numbered apart
    for _ in range(3):  # several text rows per bucket, as batches append them
        await put(db, owner.id, oid, _events(rng, 400, shared))
        await put(db, other.id, None, _events(rng, 150, shared[::2]))

    assert await _check_all(client, db, tenants) == {"rollup", "rollup+raw"}

    await _fold(db)
    for tenant, _ in tenants:
        assert await tenant_rows(db, "client_sets", tenant) == 0
        assert await tenant_rows(db, "client_id_sets", tenant) > 0
    await _check_all(client, db, tenants)

    # Late events for folded buckets: clients the dictionary has, and new ones it has not.
    late = shared[:10] + [f"late{i}" for i in range(15)]
    await put(db, owner.id, oid, _events(rng, 200, late))
    await put(db, other.id, None, _events(rng, 60, late[5:]))
    assert await tenant_rows(db, "client_sets", oid) > 0
    await _check_all(client, db, tenants)

    # Folds racing batches (and each other) into the same buckets: whatever each fold took or
    # left, the union is the same.
    racing = [f"race{i}" for i in range(10)] + shared[20:30] + late[:5]
    await asyncio.gather(
        put(db, owner.id, oid, _events(rng, 150, racing)),
        _fold(db),
        put(db, other.id, None, _events(rng, 80, racing)),
        _fold(db),
        put(db, owner.id, oid, _events(rng, 150, racing)),
    )
    await _check_all(client, db, tenants)

    await _fold(db)
    await _check_all(client, db, tenants)
    # A late row of a folded bucket is a second coded row of it, read as a union.
    (several,) = await sql(
        db,
        "SELECT count(*) FROM (SELECT 1 FROM analytics.client_id_sets WHERE tenant_id = CAST(:t AS uuid)"
        " GROUP BY name, bucket HAVING count(*) > 1) AS x",
        t=oid,
    )
    assert several[0] > 0
    # Dense per tenant: 0..n-1 for the n distinct clients of the tenant's events.
    for tenant, _ in tenants:
        (ids,) = await sql(
            db,
            "SELECT count(*), min(id), max(id), (SELECT count(DISTINCT client_id) FROM analytics.events"
            " WHERE tenant_id = CAST(:t AS uuid)) FROM analytics.client_ids WHERE tenant_id = CAST(:t AS uuid)",
            t=tenant,
        )
        assert (ids[0], ids[1], ids[2]) == (ids[3], 0, ids[3] - 1)

    # Row-level security: the other tenant's dictionary and sets are invisible.
    async with db.uow() as uow:
        await open_context(uow, other.token, "personal")
        for table in ("client_ids", "client_id_sets"):
            query = f"SELECT count(*) FILTER (WHERE tenant_id = CAST(:o AS uuid)), count(*) FROM analytics.{table}"
            theirs, seen = (await uow.session.execute(text(query), {"o": oid})).one()
            assert theirs == 0 and seen == await tenant_rows(db, table, other.id), table


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", ()) for n in _plan_nodes(child))]


async def test_numbering_reads_the_highest_id_once_per_tenant_not_once_per_new_client(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Asked per new client, the highest id's backward index scan stepped over every entry the
    statement had inserted so far: quadratic in the new clients (42 s for 24k). The plan, run,
    must read it once per tenant, and number the clients densely."""
    from core.analytics.client_sets import _COMPACT, _DICTIONARY_LOCK, _NUMBER

    owner: Account = await signup(client, "numbering")
    # Numbering and folding reach every tenant's closed buckets, and modules that ran before on
    # this worker may have left some unfolded (test_queries leaves its tenant's): fold them now,
    # so the plans below read this test's tenant alone, as the counts they are held to assume.
    await fold(db, END + dt.timedelta(days=1))
    rng = random.Random(2026_12_06)
    new = 2_000
    await put(db, owner.id, None, _events(rng, new * 2, [f"n{i}" for i in range(new)]))
    async with db.system() as uow:
        await uow.session.execute(_DICTIONARY_LOCK)
        explained = await uow.session.execute(
            text(f"EXPLAIN (ANALYZE, FORMAT JSON) {_NUMBER.text}"),
            {"before": END + dt.timedelta(days=1), "limit": 10_000},
        )
        plan = explained.scalar_one()[0]["Plan"]
        folded = await uow.session.execute(
            text(f"EXPLAIN (ANALYZE, FORMAT JSON) {_COMPACT.text}"),
            {"before": END + dt.timedelta(days=1), "limit": 10_000},
        )
        fold_plan = folded.scalar_one()[0]["Plan"]
    # The fold looks each client up by the dictionary's key, whatever the statistics say:
    # never a scan of the tenant's dictionary per row.
    lookups = [n for n in _plan_nodes(fold_plan) if n.get("Relation Name") == "client_ids"]
    assert lookups and all(n["Actual Rows"] <= 1 for n in lookups), lookups
    assert sum(n["Actual Loops"] for n in lookups) >= new, lookups
    on_dictionary = [n for n in _plan_nodes(plan) if n.get("Relation Name") == "client_ids"]
    highest = [n for n in on_dictionary if n.get("Scan Direction") == "Backward"]
    assert highest and sum(n["Actual Loops"] for n in highest) == 1, highest
    assert sum(n.get("Heap Fetches", 0) for n in on_dictionary) <= new, on_dictionary
    (ids,) = await sql(
        db,
        "SELECT count(*), min(id), max(id), (SELECT count(DISTINCT client_id) FROM analytics.events"
        " WHERE tenant_id = CAST(:t AS uuid)) FROM analytics.client_ids WHERE tenant_id = CAST(:t AS uuid)",
        t=owner.id,
    )
    assert ids[0] == ids[3] > new / 2 and ids[1] == 0 and ids[2] == ids[0] - 1, ids
