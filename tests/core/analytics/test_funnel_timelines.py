"""Funnels read from the per-client timelines equal the SQL funnel (counts and medians to the
last bit) and an independent Python reading, for two tenants sharing client ids: as ingested
(raw events only), folded, with late events for folded buckets (known and new clients), with
folds racing batches, and folded again; ranges off the 15-minute grid in DST and :45 zones,
ties on the same instant, the same event twice. Row-level security hides another tenant's
timelines (`test_handlers` checks an org's deletion purges them)."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import statistics
from collections import defaultdict

import httpx
import numpy as np
from sqlalchemy import text

from core.analytics._queries import resolve
from core.analytics.funnels import _by_sql, _steps, _window_seconds
from core.analytics.schemas import FunnelIn
from core.analytics.timelines import StepResult, _median, funnel_from_timelines
from core.opener import open_context
from core.uow import Database
from tests.conftest import Account, make_org, signup
from tests.core.analytics.support import Ev, caller, fold, org_id, put, sql, tenant_rows

UTC = dt.UTC
START = dt.datetime(2026, 10, 20, tzinfo=UTC)  # spans Paris's DST change (2026-10-25)
END = dt.datetime(2026, 11, 3, tzinfo=UTC)
NAMES = ["page_view", "signup", "purchase"]
FUNNELS = [
    (["page_view", "signup", "purchase"], "3d"),
    (["signup", "page_view", "signup"], "7d"),
    (["page_view", "signup", "page_view", "purchase"], "1h"),
    (["purchase", "page_view"], "14d"),
]
RANGES = [  # (zone, start, end): off the grid, whole local days, and a narrow one
    ("Europe/Paris", "2026-10-21T10:07:03+02:00", "2026-10-30T08:53:00+01:00"),
    ("Europe/Paris", "2026-10-22", "2026-10-28"),
    ("Asia/Kathmandu", "2026-10-24T00:00:00+05:45", "2026-10-24T06:10:00+05:45"),
]


def _events(rng: random.Random, count: int, clients: list[str]) -> list[Ev]:
    minutes = int((END - START).total_seconds() // 60)
    # Whole minutes, so that steps often fall on the same instant (>= against > is checked).
    return [
        (
            rng.choice(NAMES),
            START + dt.timedelta(minutes=rng.randrange(minutes)),
            rng.choice(clients) if rng.random() < 0.9 else None,
            {},
        )
        for _ in range(count)
    ]


async def _naive(
    db: Database, tenant: str, steps: list[str], s: dt.datetime, e: dt.datetime, w: int
) -> list[int]:
    """An independent reading: every client's events in Python, step by step."""
    rows = await sql(
        db,
        "SELECT client_id, name, ts FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)"
        " AND client_id IS NOT NULL",
        t=tenant,
    )
    per_client: dict[str, list[tuple[dt.datetime, str]]] = defaultdict(list)
    for client_id, name, ts in rows:
        per_client[client_id].append((ts, name))
    counts = [0] * len(steps)
    for evs in per_client.values():
        firsts = sorted(t for t, n in evs if n == steps[0] and s <= t < e)
        if not firsts:
            continue
        times = [firsts[0]]
        counts[0] += 1
        for k in range(1, len(steps)):
            strict = steps[k] == steps[k - 1]
            nxt = sorted(
                t
                for t, n in evs
                if n == steps[k]
                and (t > times[-1] if strict else t >= times[-1])
                and t <= times[0] + dt.timedelta(seconds=w)
            )
            if not nxt:
                break
            times.append(nxt[0])
            counts[k] += 1
    return counts


async def _check_all(db: Database, tenants: list[tuple[str, Account, str | None]]) -> None:
    for tenant, who, org in tenants:
        converted = 0
        for names, window in FUNNELS:
            for tz, start, end in RANGES:
                q = FunnelIn(steps=list(names), window=window, start=start, end=end, time_zone=tz)
                rng, w = resolve(q), _window_seconds(q.window)
                async with caller(db, who, org) as (ctx, uow):
                    fast = await funnel_from_timelines(uow, ctx.tenant_id, names, rng.start, rng.end, w)
                    slow = await _by_sql(ctx, uow, _steps(q), rng, w)
                assert fast == slow, (tenant, names, window, start)
                assert [r.clients for r in fast] == await _naive(db, tenant, names, rng.start, rng.end, w)
                converted += fast[-1].clients
        assert converted > 0  # the cases are not vacuous


async def _fold(db: Database) -> None:
    await fold(db, END + dt.timedelta(days=1))


async def test_funnels_from_timelines_equal_sql_through_folds_and_late_events(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signup(client, "tl")
    other = await signup(client, "tl")
    org = await make_org(client, owner)
    oid = await org_id(client, owner, org)
    tenants = [(oid, owner, org), (other.id, other, None)]
    rng = random.Random(2026_12_06)
    shared = [f"c{i}" for i in range(40)]  # the same ids in both tenants
    for _ in range(2):
        await put(db, owner.id, oid, _events(rng, 500, shared))
        await put(db, other.id, None, _events(rng, 200, shared[::3]))

    assert await tenant_rows(db, "client_timelines", oid) == 0  # raw events only
    await _check_all(db, tenants)

    await _fold(db)
    assert (
        await tenant_rows(db, "client_sets", oid) == 0 and await tenant_rows(db, "client_timelines", oid) > 0
    )
    await _check_all(db, tenants)

    # Late events for folded buckets: known clients and new ones the dictionary has not seen.
    late = shared[:8] + [f"late{i}" for i in range(12)]
    await put(db, owner.id, oid, _events(rng, 250, late))
    await put(db, other.id, None, _events(rng, 80, late[4:]))
    assert await tenant_rows(db, "client_sets", oid) > 0
    await _check_all(db, tenants)

    racing = [f"race{i}" for i in range(8)] + late[:6]
    await asyncio.gather(
        put(db, owner.id, oid, _events(rng, 150, racing)),
        _fold(db),
        put(db, other.id, None, _events(rng, 60, racing)),
        _fold(db),
    )
    await _check_all(db, tenants)
    await _fold(db)
    await _check_all(db, tenants)
    # A bucket folded twice has one timeline row: rewritten, not appended.
    (dupes,) = await sql(
        db,
        "SELECT count(*) FROM (SELECT 1 FROM analytics.client_timelines GROUP BY tenant_id, name, bucket"
        " HAVING count(*) > 1) AS x",
    )
    assert dupes[0] == 0

    # Row-level security: the org's timelines are invisible to the other person.
    async with db.uow() as uow:
        await open_context(uow, other.token, "personal")
        query = "SELECT count(*) FILTER (WHERE tenant_id = CAST(:o AS uuid)), count(*) FROM analytics.client_timelines"
        theirs, seen = (await uow.session.execute(text(query), {"o": oid})).one()
        assert theirs == 0 and seen == await tenant_rows(db, "client_timelines", other.id)


def test_median_matches_postgresql_interpolation() -> None:
    """`percentile_cont(0.5)` of an even count: lower + (upper - lower) * 0.5, not their mean."""
    values = np.array([0.1, 0.7, 0.3, 1e-6])
    assert _median(values) == 0.1 + (0.3 - 0.1) * 0.5
    assert _median(np.array([5.0])) == 5.0 and _median(np.array([])) is None
    assert statistics.median([1.0, 2.0, 4.0]) == _median(np.array([4.0, 1.0, 2.0]))
    assert StepResult(1, None, None) == StepResult(1, None, None)
