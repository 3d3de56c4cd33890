"""Every ingest statement locks its rollup rows in one order: `analytics.counts` before
`analytics.property_counts`. Two batches of a tenant on one rollup stripe (the same
`pg_backend_pid() % 8`) that locked them in opposite orders deadlocked (40P01: a 500 seen in
CI between a fast batch and a concurrent resend on the careful path). Which order a statement
takes is not visible in its text: PostgreSQL runs the data-modifying CTEs the main query does
not read after it, the last written first. So each path is checked by what it holds: a
blocker holds every property-count row of the tenant (every stripe), the batch waits on it, and
by then it must already hold its counts rows, which a NOWAIT probe finds locked. In the other
order the batch waits before touching a counts row, and the probe takes them. Deterministic:
no race is needed, and whichever backend (stripe) the batch runs on, its rows are held."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from core.analytics import fastpath
from core.analytics.store import SHARDS, SMALL_BATCH
from core.uow import Database
from tests.conftest import Account, signup
from tests.core.analytics.support import sql
from tests.support.sql import system_sql

NAME = "lock_order"


def _events(count: int, ts: dt.datetime) -> list[dict[str, Any]]:
    # One name, one instant, one rolled-up property: every event of every batch lands on the
    # same rollup rows (one per grain in each table).
    return [
        {"id": str(uuid.uuid4()), "name": NAME, "timestamp": ts.isoformat(), "client_id": "c1",
         "properties": {"plan": "pro"}}
        for _ in range(count)
    ]  # fmt: skip


@pytest.fixture
async def superuser(db: Database) -> AsyncIterator[Callable[[], Any]]:
    """Raw connections past row-level security and the app's pools: the blocker and the probe
    must not wait for, or take, a connection the batch needs."""
    url = make_url(db.settings.database_url or "").set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    opened: list[asyncpg.Connection] = []

    async def connect() -> asyncpg.Connection:
        conn = await asyncpg.connect(dsn)
        opened.append(conn)
        return conn

    try:
        yield connect
    finally:
        for conn in opened:
            await conn.close()


async def _seed_every_stripe(client: httpx.AsyncClient, db: Database, a: Account, ts: dt.datetime) -> None:
    """The rollup rows of the batches to come, committed on every stripe, so that the batch's
    upsert locks an existing row whichever backend it runs on (a row it inserted would be
    invisible to the probe)."""
    r = await client.post("/v1/analytics/events", json={"events": _events(1, ts)}, headers=a.h())
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    for table, key in (("counts", "person_id"), ("property_counts", "props")):
        await system_sql(
            db,
            f"INSERT INTO analytics.{table} (tenant_id, grain, name, bucket, {key}, shard, n)"
            f" SELECT tenant_id, grain, name, bucket, {key}, s, 0 FROM analytics.{table}"
            f" CROSS JOIN generate_series(0, {SHARDS - 1}) AS s"
            " WHERE tenant_id = CAST(:t AS uuid) ON CONFLICT DO NOTHING",
            {"t": a.id},
        )
    rows = await sql(
        db,
        "SELECT count(DISTINCT shard) FROM analytics.property_counts WHERE tenant_id = CAST(:t AS uuid)",
        t=a.id,
    )
    assert rows[0][0] == SHARDS


async def _blocked_behind(probe: asyncpg.Connection, blocker_pid: int, task: asyncio.Task[Any]) -> None:
    """Until a backend waits on a lock the blocker holds (the batch reached the property
    counts). There is no event to await for another backend's lock wait: pg_stat_activity is
    polled, bounded."""
    for _ in range(500):
        waiting = await probe.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", blocker_pid
        )
        if waiting:
            return
        if task.done():  # failed, or finished without waiting: show why
            task.result()
            raise AssertionError("the batch finished without writing the blocked property counts")
        await asyncio.sleep(0.01)
    raise AssertionError("the batch never reached the property counts")


# (events in the batch, whether one of them was stored before, whether the fast path may take it)
PATHS = {
    # INSERT_NEW_FROM_ARRAYS: the one statement of a fast batch.
    "fast batch": (5, False, True),
    # INSERT_FROM_PARAMS: the per-item path's small batch, and where a fast batch's resend goes.
    "careful, small": (5, False, False),
    "resend, small": (5, True, True),
    # INSERT_NEW_FROM_TEMP: the per-item path's large batch through COPY, all new.
    "careful, large": (SMALL_BATCH + 20, False, False),
    # INSERT_FROM_TEMP: the same batch holding a resent event.
    "resend, large": (SMALL_BATCH + 20, True, False),
}


@pytest.mark.parametrize("path", PATHS)
async def test_a_batch_holds_its_counts_before_it_takes_its_property_counts(
    client: httpx.AsyncClient,
    db: Database,
    superuser: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    size, resend, fast = PATHS[path]
    a = await signup(client)
    ts = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).replace(microsecond=0)
    await _seed_every_stripe(client, db, a, ts)
    batch = _events(size, ts)
    if resend:
        r = await client.post("/v1/analytics/events", json={"events": batch[:1]}, headers=a.h())
        assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    if not fast:
        monkeypatch.setattr(fastpath, "fast_batch", lambda *args, **kwargs: None)

    blocker, probe = await superuser(), await superuser()
    blocker_pid = await blocker.fetchval("SELECT pg_backend_pid()")
    blocker_tx = blocker.transaction()
    await blocker_tx.start()
    held = await blocker.fetch(
        "SELECT 1 FROM analytics.property_counts WHERE tenant_id = $1 FOR UPDATE", uuid.UUID(a.id)
    )
    assert len(held) == SHARDS * 3  # every grain of the one (name, bucket, props), every stripe
    writer = asyncio.create_task(client.post("/v1/analytics/events", json={"events": batch}, headers=a.h()))
    try:
        await _blocked_behind(probe, blocker_pid, writer)
        probe_tx = probe.transaction()
        await probe_tx.start()
        try:
            with pytest.raises(asyncpg.LockNotAvailableError):
                # Taken at once when the batch waits on the property counts before writing its
                # counts: the order that deadlocks against a batch holding the counts.
                await probe.fetch(
                    "SELECT 1 FROM analytics.counts WHERE tenant_id = $1 FOR UPDATE NOWAIT", uuid.UUID(a.id)
                )
        finally:
            await probe_tx.rollback()
    finally:
        await blocker_tx.rollback()
        r = await writer
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == size - resend and r.json()["duplicates"] == int(resend)
    total = await sql(
        db,
        "SELECT sum(n) FROM analytics.counts WHERE tenant_id = CAST(:t AS uuid) AND grain = 15",
        t=a.id,
    )
    assert total[0][0] == 1 + size  # the seed and every event once, on whichever stripes
