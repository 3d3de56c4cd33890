"""Analytics ingest: 10,000-event batches through POST /v1/analytics/events (a real server
process: auth, validation, one insert statement under row-level security that reads the rows
from the body, records the ids and rolls up) against raw COPY of the same kind of rows straight
into the same partitioned table as the owner, in one run. Besides the rates it prints where
the CPU went per batch (this process, the server process, PostgreSQL): on a machine whose
cores both sides share, the ratio of rates follows the ratio of CPU per batch."""

from __future__ import annotations

import asyncio
import contextlib
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
import psutil

from benchmarks.common import SECONDS, bench_database, check, server
from benchmarks.people import acting, person
from core.analytics.policy import INGEST
from core.db import asyncpg_dsn
from core.tenancy import create_api_key, create_org
from core.tenancy.schemas import ApiKeyIn, OrgIn
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
    cpu: dict[str, float] = field(default_factory=dict)  # seconds per process group

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


def _cpu_seconds() -> dict[str, float]:
    """CPU used so far by this process (the client), its children (the server) and PostgreSQL's
    processes (backends and helpers; those we may not read are left out)."""
    me = psutil.Process()
    out = {"client": sum(me.cpu_times()[:2]), "server": 0.0, "postgres": 0.0}
    for child in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            out["server"] += sum(child.cpu_times()[:2])
    for proc in psutil.process_iter(["name"]):
        if (proc.info["name"] or "").startswith("postgres"):
            with contextlib.suppress(psutil.Error):
                out["postgres"] += sum(proc.cpu_times()[:2])
    return out


async def _timed(run: Run, queue: list[Any], send: Any, seconds: float) -> None:
    """Send jobs from `queue` for `seconds` with CONCURRENCY in flight; add to `run`."""
    stop_at = time.perf_counter() + seconds
    before = _cpu_seconds()

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
    for group, used in _cpu_seconds().items():
        run.cpu[group] = run.cpu.get(group, 0.0) + used - before[group]


async def run() -> str:
    # Enough batches for the time allowed at up to ~60k events/s per side; a run stops early
    # (and says so by its event count) when they are used up.
    per_side = max(4, int(SECONDS * 60_000 / BATCH) + CONCURRENCY)
    async with bench_database() as settings:
        db = Database(settings)
        auth = await person(db, "ingest-bench", "ingest@example.com", "B")
        async with acting(db, auth.access_token) as (ctx, uow):
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
        f"  CPU per {BATCH:,}-event batch (ms)    {'client':>10} {'server':>8} {'postgres':>8} {'total':>8}"
    )
    for r in (raw, api):
        n = len(r.latencies) or 1
        per = {k: v / n * 1000 for k, v in r.cpu.items()}
        lines.append(
            f"  {r.label:40} {per.get('client', 0):10.1f} {per.get('server', 0):8.1f}"
            f" {per.get('postgres', 0):8.1f} {sum(per.values()):8.1f}"
        )
    ratio = api.rate / raw.rate if raw.rate else 0.0
    lines.append(
        "  targets: "
        + check("ingest vs raw COPY", ">=0.50x", f"{ratio:.2f}x", ratio >= 0.5)
        + "; "
        + check("ingest events/s", ">=10,000/s", f"{api.rate:,.0f}/s", api.rate >= 10_000)
    )
    lines.append(
        f"  check: {stored:,} rows stored (expected {expected_rows:,});"
        f" rollup counts {int(rolled):,} API events (expected {api.events + BATCH:,})"
    )
    return "\n".join(lines)
