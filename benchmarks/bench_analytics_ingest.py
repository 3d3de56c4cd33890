"""Analytics ingest: 10,000-event batches through POST /v1/analytics/events (a real server
process: auth, validation, COPY to a temp table, idempotent insert, rollup) against raw COPY
of the same kind of rows straight into the same partitioned table as the owner, in one run."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from benchmarks.common import SECONDS, bench_database, server
from core.analytics.service import INGEST
from core.db import asyncpg_dsn
from core.tenancy.schemas import ApiKeyIn, OrgIn, SignupIn
from core.tenancy.service import Device, create_api_key, create_org, signup
from core.uow import Database

BATCH = int(os.environ.get("BENCH_ANALYTICS_BATCH", "10000"))
CONCURRENCY = int(os.environ.get("BENCH_ANALYTICS_CONCURRENCY", "2"))
ROUNDS = 3
NAMES = ["page_view", "page_view", "page_view", "signup", "lead_captured", "cta_click", "search", "checkout"]
PATHS = ["/", "/pricing", "/book", "/blog/a", "/blog/b", "/about"]


@dataclass
class Run:
    label: str
    events: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def rate(self) -> float:
        return self.events / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def _event(rng: random.Random, now: dt.datetime) -> tuple[uuid.UUID, dt.datetime, str, str, dict[str, Any]]:
    # Live traffic: the last hour, as sites send it.
    ts = (now - dt.timedelta(seconds=rng.randrange(3600))).replace(microsecond=0)
    props = {
        "path": rng.choice(PATHS),
        "plan": rng.choice(["free", "pro", "team"]),
        "ms": rng.randrange(2000),
    }
    return uuid.uuid4(), ts, rng.choice(NAMES), f"visitor-{rng.randrange(20_000)}", props


def _batches(count: int, seed: int) -> list[list[tuple[uuid.UUID, dt.datetime, str, str, dict[str, Any]]]]:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    return [[_event(rng, now) for _ in range(BATCH)] for _ in range(count)]


async def _timed(run: Run, queue: list[Any], send: Any, seconds: float) -> None:
    """Send jobs from `queue` for `seconds` with CONCURRENCY in flight; add to `run`."""
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while queue and time.perf_counter() < stop_at:
            job = queue.pop()
            t0 = time.perf_counter()
            ok = await send(job)
            run.latencies.append(time.perf_counter() - t0)
            if ok:
                run.events += BATCH
            else:
                run.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    run.elapsed += time.perf_counter() - started


async def run() -> str:
    # Enough batches for the time allowed at up to ~60k events/s per side; a run stops early
    # (and says so by its event count) when they are used up.
    per_side = max(4, int(SECONDS * 60_000 / BATCH) + CONCURRENCY)
    async with bench_database() as settings:
        db = Database(settings)
        auth = await signup(
            db,
            SignupIn(
                email="ingest@example.com", password="bench-password", slug="ingest-bench", display_name="B"
            ),
            Device(),
        )
        async with db.uow() as uow:
            from core.auth import authenticate

            ctx = await authenticate(uow, auth.access_token)
            org = await create_org(ctx, uow, OrgIn(slug="ingest-org", name="Ingest"))
            key = await create_api_key(ctx, uow, ApiKeyIn(name="site", scopes=[INGEST], org=org.slug))
        await db.dispose()
        person_id, org_id = auth.person.id, org.id

        rest_batches = [
            json.dumps(
                {
                    "events": [
                        {"id": str(i), "name": n, "timestamp": ts.isoformat(), "client_id": c,
                         "properties": p, "source": "web"}
                        for i, ts, n, c, p in batch
                    ]
                },
                separators=(",", ":"),
            ).encode()
            for batch in _batches(per_side, 1)
        ]  # fmt: skip
        copy_batches = [
            [(i, ts, n, c, "web", json.dumps(p), person_id, org_id) for i, ts, n, c, p in batch]
            for batch in _batches(per_side, 2)
        ]
        headers = {"Authorization": f"Bearer {key.token}", "Content-Type": "application/json"}
        async with server(settings) as base, httpx.AsyncClient(base_url=base, timeout=120) as client:
            warm = await client.post("/v1/analytics/events", content=rest_batches.pop(), headers=headers)
            assert warm.status_code == 200 and warm.json()["accepted"] == BATCH, warm.text[:500]

            async def rest(body: bytes) -> bool:
                r = await client.post("/v1/analytics/events", content=body, headers=headers)
                return r.status_code == 200 and r.json()["accepted"] == BATCH

            pool = await asyncpg.create_pool(asyncpg_dsn(settings.database_url or ""), min_size=CONCURRENCY)
            try:

                async def copy(records: list[tuple[Any, ...]]) -> bool:
                    async with pool.acquire() as conn:
                        await conn.copy_records_to_table(
                            "events",
                            schema_name="analytics",
                            columns=(
                                "id",
                                "ts",
                                "name",
                                "client_id",
                                "source",
                                "properties",
                                "person_id",
                                "org_id",
                            ),
                            records=records,
                        )
                    return True

                await copy(copy_batches.pop())  # warm-up
                raw = Run("raw COPY into analytics.events (owner)")
                api = Run("POST /v1/analytics/events (API key)")
                # Alternating slices: both sides see the same machine (others share its CPU).
                for _ in range(ROUNDS):
                    await _timed(raw, copy_batches, copy, SECONDS / ROUNDS)
                    await _timed(api, rest_batches, rest, SECONDS / ROUNDS)
                async with pool.acquire() as conn:
                    stored = await conn.fetchval(
                        "SELECT count(*) FROM analytics.events WHERE source = 'web' AND org_id = $1", org_id
                    )
                    rolled = await conn.fetchval(
                        "SELECT sum(n) FROM analytics.counts WHERE tenant_id = $1 AND grain = 15", org_id
                    )
            finally:
                await pool.close()
    expected_rows = raw.events + api.events + 2 * BATCH
    lines = [
        "",
        f"Analytics ingest, {BATCH:,}-event batches, {CONCURRENCY} in flight, {SECONDS:.0f} s per side"
        f" in {ROUNDS} alternating slices",
        f"  {'':40} {'events/s':>10} {'batches':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs raw':>7} {'errors':>7}",
    ]
    for r in (raw, api):
        lines.append(
            f"  {r.label:40} {r.rate:10,.0f} {len(r.latencies):8d} {r.pct(0.5):8.0f} {r.pct(0.99):8.0f}"
            f" {r.rate / raw.rate if raw.rate else float('nan'):6.2f}x {r.errors:7d}"
        )
    lines.append(
        f"  targets: >= 0.50x raw -> {'met' if api.rate >= 0.5 * raw.rate else 'MISSED'};"
        f" >= 10,000 events/s -> {'met' if api.rate >= 10_000 else 'MISSED'}"
    )
    lines.append(
        f"  check: {stored:,} rows stored (expected {expected_rows:,});"
        f" rollup counts {int(rolled):,} API events (expected {api.events + BATCH:,})"
    )
    return "\n".join(lines)
