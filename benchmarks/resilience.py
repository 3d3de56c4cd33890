"""The resilience scenarios: real server processes on loopback, a bounded write load, faults
injected on purpose, and an account of what survived. `./run resilience` prints the one-page
report; tests/resilience/ runs the same scenarios (shorter) and asserts on the same figures.

Load: concurrent client creations (the tenancy write every later feature builds on), each with
an Idempotency-Key, each answer recorded. A write is *acknowledged* when the server answered
201; after the fault every acknowledged write must be *found*, retrying an unanswered key must
never duplicate, every client row must have its outbox event (no partial write), and every
committed event must be *delivered* once the system is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.common import InLoopServer, free_port, quiet_settings
from core.config import Settings
from core.db import asyncpg_url
from core.migrate import create_database, drop_database, migrate

ROOT = Path(__file__).resolve().parent.parent


def child_env(settings: Settings, values: dict[str, str]) -> dict[str, str]:
    """The environment of a process this harness starts: nothing of the caller's own Atlilith or
    Inngest settings leaks in; it gets the database, secret, data dir and quiet JSON logs of
    `settings`, then `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLILITH_", "INNGEST_"))}
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "ATLILITH_JWT_SECRET": settings.jwt_secret or "",
            "ATLILITH_LOG_LEVEL": "warning",
            "ATLILITH_LOG_FORMAT": "json",
            "ATLILITH_DATA_DIR": str(settings.data_dir),
            "PYTHONPATH": str(ROOT),
            **values,
        }
    )
    return env


async def end_process(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process this harness started: SIGTERM lets it drain; one that has not gone after
    15 s is killed."""
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait, 5)


PROBE_HANDLER = "resilience.client_created"


# --- the report -----------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    fault: str
    writers: int = 0
    seconds: float = 0.0
    attempted: int = 0
    acknowledged: int = 0
    found: int = 0
    unanswered: int = 0
    retried_ok: int = 0
    duplicates: int = 0
    partial: int = 0
    events_committed: int = 0
    events_delivered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    slowest_failure_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def check(self) -> None:
        """The invariants every scenario must keep, recorded as problems."""
        if self.found != self.acknowledged:
            self.problems.append(f"{self.acknowledged - self.found} acknowledged writes are missing")
        if self.duplicates:
            self.problems.append(f"{self.duplicates} writes were applied twice")
        if self.partial:
            self.problems.append(f"{self.partial} partial writes (a row without its event, or the reverse)")
        if self.events_delivered != self.events_committed:
            self.problems.append(
                f"{self.events_committed - self.events_delivered} committed events undelivered"
            )
        if self.statuses.get("500"):
            self.problems.append(f"{self.statuses['500']} internal errors (500)")


def render(scenarios: list[Scenario]) -> str:
    lines = ["", "Atlilith resilience report (loopback only, bounded load)", ""]
    head = (
        f"  {'scenario':24} {'load':>12} {'attempted':>9} {'acked':>6} {'found':>6} {'retried':>8}"
        f" {'dupes':>6} {'partial':>7} {'events':>13} {'result':>7}"
    )
    lines.append(head)
    lines.append("  " + "-" * (len(head) - 2))
    for s in scenarios:
        load = f"{s.writers}w x {s.seconds:.0f}s"
        events = f"{s.events_delivered}/{s.events_committed}"
        lines.append(
            f"  {s.name:24} {load:>12} {s.attempted:9d} {s.acknowledged:6d} {s.found:6d}"
            f" {s.retried_ok:>4}/{s.unanswered:<3d} {s.duplicates:6d} {s.partial:7d} {events:>13}"
            f" {'PASS' if s.ok else 'FAIL':>7}"
        )
    lines.append("")
    lines.append("  acked = answered 201; found = acked writes present after recovery; retried = unanswered")
    lines.append(
        "  requests retried with their Idempotency-Key after recovery (ok/total);"
        " events = delivered/committed"
    )
    for s in scenarios:
        lines.append("")
        lines.append(f"  {s.name}: {s.fault}")
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(s.statuses.items()))
        lines.append(f"    answers during the run: {answers}")
        if s.slowest_failure_ms:
            lines.append(f"    slowest failed request: {s.slowest_failure_ms:.0f} ms")
        lines += [f"    {note}" for note in s.notes]
        lines += [f"    PROBLEM: {problem}" for problem in s.problems]
    return "\n".join(lines)


# --- databases and servers ------------------------------------------------------------------------


def base_settings(database_url: str, data_dir: Path) -> Settings:
    return quiet_settings(database_url, "resilience-secret-" + "r" * 40, data_dir=data_dir)


@asynccontextmanager
async def scratch_database(admin_url: str, data_dir: Path) -> AsyncIterator[Settings]:
    """A fresh migrated database on the server of `admin_url`, dropped afterwards."""
    name = f"atlilith_resilience_{secrets.token_hex(3)}"
    await create_database(admin_url, name)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    settings = base_settings(url, data_dir)
    try:
        await migrate(settings)
        yield settings
    finally:
        await drop_database(admin_url, name)


class ServerProcess:
    """The app in its own process (`benchmarks.resilience_server`), relay on, as in production."""

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.data_dir / f"resilience-server-{self.port}.log"

    def env(self) -> dict[str, str]:
        return child_env(
            self.settings,
            {
                "ATLILITH_PASSWORD_HASH_PROFILE": "cheapest",
                "ATLILITH_RELAY_ENABLED": "1",
                "ATLILITH_RELAY_POLL_SECONDS": "0.5",
                "ATLILITH_HANDLER_BACKOFF_BASE_SECONDS": "0.05",
                "ATLILITH_HANDLER_BACKOFF_MAX_SECONDS": "0.5",
                # The load is one client on one address, far above any person's rate.
                "ATLILITH_RATE_LIMIT_ENABLED": "0",
                "ATLILITH_PORT": str(self.port),
                **self.extra_env,
            },
        )

    async def start(self, timeout: float = 60) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.resilience_server"],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}: {self.tail()}")
                with suppress(httpx.HTTPError):
                    if (await c.get(f"{self.base}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server did not become healthy: {self.tail()}")

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            await end_process(self.proc)
        self.log.unlink(missing_ok=True)


async def sign_up(base: str) -> str:
    slug = f"res-{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.post(
            f"{base}/v1/auth/signup",
            json={
                "email": f"{slug}@example.com",
                "password": "pw-" + slug,
                "slug": slug,
                "display_name": slug,
            },
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


# --- the load -------------------------------------------------------------------------------------


@dataclass
class Load:
    """Concurrent client creations; every attempt and its outcome is kept."""

    token: str
    writers: int
    acknowledged: dict[str, str] = field(default_factory=dict)  # key -> client id
    unanswered: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)
    attempted: int = 0
    slowest_failure_ms: float = 0.0
    base: str = ""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _one(self, client: httpx.AsyncClient) -> None:
        key = uuid.uuid4().hex
        self.attempted += 1
        started = time.perf_counter()
        try:
            r = await client.post(
                f"{self.base}/v1/clients",
                json={"name": f"load {key}"},
                headers={"Authorization": f"Bearer {self.token}", "Idempotency-Key": key},
            )
        except httpx.HTTPError as exc:
            # No answer: the write may or may not have committed. Retried after recovery.
            self.unanswered.add(key)
            self.statuses[type(exc).__name__] += 1
            await asyncio.sleep(0.05)
            return
        took = (time.perf_counter() - started) * 1000
        self.statuses[str(r.status_code)] += 1
        if r.status_code == 201:
            self.acknowledged[key] = r.json()["id"]
        else:
            self.slowest_failure_ms = max(self.slowest_failure_ms, took)
            await asyncio.sleep(0.05)

    async def run(self, base_of: Any) -> None:
        """Write until stopped; `base_of()` gives the current server URL (it moves on restart)."""

        async def worker() -> None:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0)) as client:
                while not self._stop.is_set():
                    self.base = base_of()
                    await self._one(client)

        await asyncio.gather(*(worker() for _ in range(self.writers)))

    def stop(self) -> None:
        self._stop.set()


async def retry_unanswered(load: Load, base: str) -> tuple[int, int]:
    """Retry every unanswered request with its key: exactly one write per key, whatever had
    happened. Returns (retried ok, newly created)."""
    ok = 0
    async with httpx.AsyncClient(timeout=10) as client:
        for key in sorted(load.unanswered):
            r = await client.post(
                f"{base}/v1/clients",
                json={"name": f"load {key}"},
                headers={"Authorization": f"Bearer {load.token}", "Idempotency-Key": key},
            )
            if r.status_code == 201:
                ok += 1
                load.acknowledged[key] = r.json()["id"]
    return ok, len(load.unanswered)


# --- what the database says -----------------------------------------------------------------------


async def audit(settings: Settings, load: Load, scenario: Scenario) -> None:
    """Acknowledged vs found, duplicates, partial writes, events committed vs delivered."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id::text, name FROM platform.clients"))).all()
            by_name = Counter(r.name for r in rows)
            ids = {r.id for r in rows}
            scenario.found = sum(1 for cid in load.acknowledged.values() if cid in ids)
            scenario.duplicates = sum(n - 1 for n in by_name.values() if n > 1)
            scenario.partial = int(
                (
                    await conn.execute(
                        text(
                            "SELECT (SELECT count(*) FROM platform.clients c WHERE NOT EXISTS"
                            "  (SELECT 1 FROM platform.outbox e WHERE e.name = 'platform/client.created'"
                            "   AND e.data->>'client_id' = c.id::text))"
                            " + (SELECT count(*) FROM platform.outbox e"
                            "  WHERE e.name = 'platform/client.created' AND NOT EXISTS"
                            "  (SELECT 1 FROM platform.clients c WHERE c.id::text = e.data->>'client_id'))"
                        )
                    )
                ).scalar_one()
            )
            counts = (await conn.execute(text(_EVENTS_SQL), {"probe": PROBE_HANDLER})).one()
            scenario.events_committed, scenario.events_delivered = (
                int(counts.committed),
                int(counts.delivered),
            )
    finally:
        await engine.dispose()
    scenario.acknowledged = len(load.acknowledged)
    scenario.attempted = load.attempted
    scenario.statuses = load.statuses
    scenario.slowest_failure_ms = load.slowest_failure_ms


# Delivered: relayed (in-process fan-out or published to Inngest), and no delivery left pending
# or dead; a client.created event must also have reached the probe handler.
_EVENTS_SQL = """
SELECT count(*) AS committed,
       count(*) FILTER (
         WHERE e.status IN ('dispatched', 'published')
           AND NOT EXISTS (SELECT 1 FROM platform.event_deliveries d
                            WHERE d.event_id = e.id AND d.status <> 'done')
           AND (e.name <> 'platform/client.created' OR e.status = 'published' OR EXISTS (
                SELECT 1 FROM platform.event_deliveries d
                 WHERE d.event_id = e.id AND d.handler = :probe AND d.status = 'done'))
       ) AS delivered
  FROM platform.outbox e
"""


async def wait_delivered(settings: Settings, timeout: float) -> float:
    """Wait until every committed event is delivered; returns the seconds it took."""
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            async with engine.connect() as conn:
                row = (await conn.execute(text(_EVENTS_SQL), {"probe": PROBE_HANDLER})).one()
            if row.committed == row.delivered:
                break
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    return time.monotonic() - started


# --- scenario 1: kill -9 under write load ---------------------------------------------------------


async def kill9_under_load(
    admin_url: str, data_dir: Path, seconds: float = 2.0, writers: int = 8
) -> Scenario:
    scenario = Scenario(
        "kill -9 under writes", "SIGKILL of the server mid-load, then a restart", writers, seconds
    )
    async with scratch_database(admin_url, data_dir) as settings:
        server = ServerProcess(settings)
        await server.start()
        try:
            load = Load(await sign_up(server.base), writers)
            current = {"base": server.base}
            task = asyncio.create_task(load.run(lambda: current["base"]))
            await asyncio.sleep(seconds)
            acked_at_kill = len(load.acknowledged)
            server.kill9()
            await asyncio.sleep(0.3)  # the writers see the dead server
            load.stop()
            await task
            scenario.notes.append(f"killed with {acked_at_kill} writes acknowledged and requests in flight")
            restart = time.monotonic()
            server = ServerProcess(settings)
            await server.start()
            scenario.notes.append(f"restarted and healthy in {time.monotonic() - restart:.1f} s")
            scenario.retried_ok, scenario.unanswered = await retry_unanswered(load, server.base)
            took = await wait_delivered(settings, timeout=30)
            scenario.notes.append(f"every committed event delivered {took:.1f} s after the retries")
            await audit(settings, load, scenario)
        finally:
            await server.stop()
    if scenario.retried_ok != scenario.unanswered:
        scenario.problems.append("a retried request with its Idempotency-Key failed after recovery")
    scenario.check()
    return scenario


# --- scenario 2: PostgreSQL restarts under load ---------------------------------------------------


async def postgres_restart_under_load(
    data_dir: Path, seconds: float = 1.5, outage: float = 1.5, writers: int = 4
) -> Scenario:
    from core.devserver import postmaster, start_postgres, stop_postgres
    from core.embedded import DATABASE, ensure_database
    from core.embedded import start as start_embedded

    scenario = Scenario(
        "PostgreSQL restart",
        f"embedded PostgreSQL stopped (fast) for {outage:.1f} s mid-load",
        writers,
        seconds * 2,
    )
    pg = start_embedded(data_dir / "resilience-pg")
    try:
        admin = pg.url(DATABASE)
        await ensure_database(admin, DATABASE)
        async with scratch_database(admin, data_dir) as settings:
            server = ServerProcess(settings)
            await server.start()
            health: list[tuple[float, int | str]] = []
            stop_polling = asyncio.Event()

            async def poll() -> None:
                async with httpx.AsyncClient(timeout=3) as c:
                    while not stop_polling.is_set():
                        try:
                            status: int | str = (await c.get(f"{server.base}/health")).status_code
                        except httpx.HTTPError as exc:
                            status = type(exc).__name__
                        health.append((time.monotonic(), status))
                        await asyncio.sleep(0.05)

            try:
                load = Load(await sign_up(server.base), writers)
                poller = asyncio.create_task(poll())
                task = asyncio.create_task(load.run(lambda: server.base))
                await asyncio.sleep(seconds)
                info = postmaster(pg.pgdata)
                assert info is not None and info[1] is not None
                await asyncio.to_thread(stop_postgres, pg.pgdata)
                down = time.monotonic()  # stopped for sure from here...
                await asyncio.sleep(outage)
                restarting = time.monotonic()  # ...to here
                await asyncio.to_thread(start_postgres, pg.pgdata, info[1])
                up = time.monotonic()
                acked_before_up = len(load.acknowledged)
                await asyncio.sleep(seconds)
                load.stop()
                await task
                stop_polling.set()
                await poller
                during = [s for t, s in health if down + 0.1 < t < restarting]
                after = [s for t, s in health if t > up]
                first_ok = next((t for t, s in health if t > up and s == 200), None)
                if not during or any(s != 503 for s in during):
                    scenario.problems.append(
                        f"/health during the outage answered {sorted(set(map(str, during)))}"
                    )
                if first_ok is None or not after or after[-1] != 200:
                    scenario.problems.append("/health did not come back to 200 without manual action")
                else:
                    scenario.notes.append(
                        f"/health: 503 x{len(during)} during the outage,"
                        f" 200 again {first_ok - up:.2f} s after restart"
                    )
                writes_after = len(load.acknowledged) - acked_before_up
                if writes_after == 0:
                    scenario.problems.append("no write succeeded after PostgreSQL came back")
                scenario.notes.append(
                    f"{writes_after} writes acknowledged after the restart, with no manual action"
                )
                scenario.retried_ok, scenario.unanswered = await retry_unanswered(load, server.base)
                await wait_delivered(settings, timeout=30)
                await audit(settings, load, scenario)
            finally:
                await server.stop()
        failed = sum(v for k, v in scenario.statuses.items() if k != "201")
        if failed and scenario.statuses.get("503", 0) == 0:
            scenario.problems.append("writes during the outage did not get a clear 503")
        if scenario.slowest_failure_ms > 5000:
            scenario.problems.append(
                f"a failing request took {scenario.slowest_failure_ms:.0f} ms (not fast)"
            )
    finally:
        pg.stop()
        # The handle only knows the first postmaster; the one we restarted is ours to stop.
        if postmaster(pg.pgdata) is not None:
            await asyncio.to_thread(stop_postgres, pg.pgdata)
    scenario.check()
    return scenario


# --- scenario 3: the Inngest event API down, then slow ----------------------------------------------


class FaultyHttp(InLoopServer):
    """A loopback stand-in for a peer (here Inngest's event API) that can be up, down (500),
    or slow; it records what it accepted. Features reuse it for their own peers."""

    force_exit = True  # a slow request would otherwise hold the shutdown for `slow_seconds`

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        self.mode = "up"  # up | down | slow
        self.slow_seconds = 30.0
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.slowed = 0

        async def ingest(request: Request) -> JSONResponse:
            if self.mode == "down":
                self.refused += 1
                return JSONResponse({"error": "down"}, status_code=500)
            if self.mode == "slow":
                self.slowed += 1
                await asyncio.sleep(self.slow_seconds)
            batch = json.loads(await request.body())
            self.received.extend(batch)
            return JSONResponse({"ids": [e.get("id") for e in batch], "status": 200})

        self.listen(Starlette(routes=[Route("/e/{key}", ingest, methods=["POST"])]))


async def inngest_outage_under_load(
    admin_url: str, data_dir: Path, seconds: float = 1.5, writers: int = 4
) -> Scenario:
    scenario = Scenario(
        "Inngest down, then slow", "event API answering 500, then hanging, then back", writers, seconds * 3
    )
    async with scratch_database(admin_url, data_dir) as settings, FaultyHttp() as inngest:
        server = ServerProcess(
            settings,
            {
                "INNGEST_EVENT_API_BASE_URL": f"http://127.0.0.1:{inngest.port}",
                "INNGEST_EVENT_KEY": "resilience",
                "INNGEST_DEV": "1",
                "ATLILITH_RELAY_PUBLISH_TIMEOUT_SECONDS": "1",
            },
        )
        await server.start()
        try:
            load = Load(await sign_up(server.base), writers)
            inngest.mode = "down"
            task = asyncio.create_task(load.run(lambda: server.base))
            await asyncio.sleep(seconds)
            acked_down = len(load.acknowledged)
            pending = await _pending(settings)
            scenario.notes.append(
                f"down: {acked_down} writes acknowledged, {inngest.refused} publishes refused,"
                f" {pending} events kept in the outbox"
            )
            if pending == 0:
                scenario.problems.append("no event waited in the outbox while Inngest was down")
            inngest.mode = "slow"
            await asyncio.sleep(seconds)
            scenario.notes.append(
                f"slow: {len(load.acknowledged) - acked_down} writes acknowledged meanwhile;"
                f" {inngest.slowed} publishes hung and were abandoned after the 1 s publish timeout"
            )
            if inngest.slowed == 0:
                scenario.problems.append("the relay never tried to publish while Inngest was slow")
            inngest.mode = "up"
            await asyncio.sleep(seconds)
            load.stop()
            await task
            took = await wait_delivered(settings, timeout=40)
            scenario.notes.append(f"back: every event published {took:.1f} s after the load stopped")
            await audit(settings, load, scenario)
            ids = {e["id"] for e in inngest.received}
            engine = create_async_engine(asyncpg_url(settings.database_url or ""))
            try:
                async with engine.connect() as conn:
                    outbox = set((await conn.execute(text("SELECT id::text FROM platform.outbox"))).scalars())
            finally:
                await engine.dispose()
            if outbox - ids:
                scenario.problems.append(f"{len(outbox - ids)} events never reached the event API")
            scenario.notes.append(
                f"event API received {len(inngest.received)} sends for {len(outbox)} events (ids dedupe)"
            )
        finally:
            await server.stop()
    if scenario.statuses.get("201", 0) != scenario.attempted:
        scenario.problems.append("a write failed because Inngest was down or slow")
    scenario.check()
    return scenario


async def _pending(settings: Settings) -> int:
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    try:
        async with engine.connect() as conn:
            return int(
                (
                    await conn.execute(text("SELECT count(*) FROM platform.outbox WHERE status = 'pending'"))
                ).scalar_one()
            )
    finally:
        await engine.dispose()


# --- scenario 4: two relay processes on one database -----------------------------------------------


class RelayProcess:
    """`atlilith relay` in its own process, loading the probe handlers, with a short lease."""

    def __init__(self, settings: Settings, name: str, lease: float) -> None:
        self.settings, self.name, self.lease = settings, name, lease
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = settings.data_dir / f"relay-{name}-{secrets.token_hex(3)}.log"
        self.deaths = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def env(self) -> dict[str, str]:
        return child_env(
            self.settings,
            {
                "ATLILITH_HANDLER_MODULES": "benchmarks.relay_probe",
                "ATLILITH_HANDLER_LEASE_SECONDS": str(self.lease),
                # Far above the lease: a takeover must come from the lease, not from polling.
                "ATLILITH_RELAY_POLL_SECONDS": "30",
                "ATLILITH_HANDLER_BACKOFF_BASE_SECONDS": "0.05",
                "ATLILITH_HANDLER_BACKOFF_MAX_SECONDS": "0.2",
            },
        )

    async def start(self, timeout: float = 60) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        started_before = self.tail().count("Atlilith relay ")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "servers.cli", "relay"],
                cwd=ROOT,
                env=self.env(),
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited with {self.proc.returncode}: {self.tail()[-3000:]}")
            if self.tail().count("Atlilith relay ") > started_before:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"relay did not start: {self.tail()[-3000:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    async def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)
            await end_process(self.proc)
        self.log.unlink(missing_ok=True)


async def _until(check: Any, timeout: float, *, every: float = 0.05, tick: Any = None) -> float:
    """Wait until `await check()` is true; returns the seconds it took (raises on timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if tick is not None:
            await tick()
        if await check():
            return time.monotonic() - started
        await asyncio.sleep(every)
    raise TimeoutError(f"not reached in {timeout:.0f} s")


async def two_relays(admin_url: str, data_dir: Path, lease: float = 2.0) -> Scenario:
    """Two relay processes on one database: events go through both; one is frozen (SIGSTOP)
    holding claims and the other delivers them once the lease runs out; one is killed (SIGKILL)
    mid-load and nothing is lost or handled twice; a handler that kills its process each time
    is dead-lettered after its attempts."""
    from benchmarks import relay_probe
    from core.uow import Database

    scenario = Scenario(
        "two relays, freeze + kill",
        "2 `atlilith relay` processes: SIGSTOP holding claims, SIGKILL mid-load, a suicidal handler",
    )
    async with scratch_database(admin_url, data_dir) as settings:
        admin = create_async_engine(asyncpg_url(settings.database_url or ""))
        db = Database(settings)
        relays = [RelayProcess(settings, "a", lease), RelayProcess(settings, "b", lease)]

        async def scalar(sql: str, **params: Any) -> Any:
            async with admin.connect() as conn:
                return (await conn.execute(text(sql), params)).scalar()

        async def emit(name: str, n: int, **data: Any) -> list[uuid.UUID]:
            async with db.system() as uow:
                return [uow.emit(name, {"i": i, **data}) for i in range(n)]

        async def handled(ids: list[uuid.UUID]) -> int:
            return int(
                await scalar(
                    "SELECT count(DISTINCT event_id) FROM relay_probe.handled WHERE event_id = ANY(:ids)",
                    ids=ids,
                )
            )

        try:
            async with admin.begin() as conn:
                for statement in relay_probe.TABLE_SQL.split(";"):
                    await conn.execute(text(statement))
                role = settings.db_system_role
                await conn.execute(text(f'GRANT USAGE ON SCHEMA relay_probe TO "{role}"'))
                await conn.execute(text(f'GRANT SELECT, INSERT ON relay_probe.handled TO "{role}"'))
            await asyncio.gather(*(r.start() for r in relays))
            a, b = relays

            # 1. Events go through both processes.
            first = await emit(relay_probe.RECORD, 40, sleep=0.05)
            await _until(lambda: _eq(handled(first), 40), 30)
            by_pid = {
                int(pid): int(n)
                for pid, n in (
                    await _rows(admin, "SELECT pid, count(*) FROM relay_probe.handled GROUP BY pid")
                )
            }
            scenario.notes.append(
                f"40 events: {by_pid.get(a.pid, 0)} handled by relay a, {by_pid.get(b.pid, 0)} by relay b"
            )
            if not by_pid.get(a.pid) or not by_pid.get(b.pid):
                scenario.problems.append("one relay handled nothing: the load did not go through both")

            # 2. Freeze a while it holds claims: b delivers them once the lease runs out.
            slow = await emit(relay_probe.RECORD, 8, sleep=1.0)

            async def a_holds() -> bool:
                return bool(
                    await scalar(
                        "SELECT count(*) FROM platform.event_deliveries WHERE status = 'pending'"
                        " AND claimed_by LIKE :me AND event_id = ANY(:ids)",
                        me=f"%:{a.pid}",
                        ids=slow,
                    )
                )

            await _until(a_holds, 10, every=0.01)
            held = [
                r[0]
                for r in await _rows(
                    admin,
                    "SELECT event_id FROM platform.event_deliveries WHERE status = 'pending'"
                    " AND claimed_by LIKE :me AND event_id = ANY(:ids)",
                    me=f"%:{a.pid}",
                    ids=slow,
                )
            ]
            a.signal(signal.SIGSTOP)
            took = await _until(lambda: _eq(handled(held), len(held)), lease + 10)
            scenario.figures["takeover_seconds"] = took
            scenario.notes.append(
                f"relay a frozen holding {len(held)} claims: relay b delivered them {took:.1f} s later"
                f" (lease {lease:.0f} s, handler 1 s)"
            )
            if took > lease + 3:
                scenario.problems.append(f"takeover of frozen claims took {took:.1f} s (lease {lease} s)")
            a.signal(signal.SIGCONT)
            await _until(lambda: _eq(handled(slow), len(slow)), 20)
            await asyncio.sleep(1.5)  # a's overrun handlers finish, find their lease gone, abandon

            # 3. Kill b mid-load: a finishes everything, nothing twice.
            load = await emit(relay_probe.RECORD, 60, sleep=0.05)
            await _until(lambda: _at_least(handled(load), 10), 20, every=0.01)
            killed_at = time.monotonic()
            b.signal(signal.SIGKILL)
            await _until(lambda: _eq(handled(load), len(load)), lease + 30)
            scenario.notes.append(
                f"relay b killed (SIGKILL) mid-load: relay a finished all 60 events"
                f" {time.monotonic() - killed_at:.1f} s after the kill"
            )
            # 4. A handler that kills its process: dead-lettered after its attempts. Spare
            # relays stand by so that each death need not wait for a restart.
            spares = [
                RelayProcess(settings, f"spare{i}", lease) for i in range(relay_probe.SUICIDE_ATTEMPTS - 1)
            ]
            relays += spares
            await asyncio.gather(b.start(), *(r.start() for r in spares))
            (poison,) = await emit(relay_probe.SUICIDE, 1)

            async def restart_the_dead() -> None:
                """Count the deaths; restart one only when no relay is left (a restart takes
                seconds on a busy machine: the spares usually make it unnecessary)."""
                for r in relays:
                    if r.proc is not None and r.proc.returncode is None and not r.alive():
                        r.deaths += 1
                if not any(r.alive() for r in relays):
                    await relays[0].start()

            async def dead() -> bool:
                status = await scalar(
                    "SELECT status FROM platform.event_deliveries WHERE event_id = :e", e=poison
                )
                return bool(status == "dead")

            took = await _until(dead, 3 * (lease + 30), every=0.1, tick=restart_the_dead)
            async with admin.connect() as conn:
                row = (
                    await conn.execute(
                        text(
                            "SELECT attempts, last_error FROM platform.event_deliveries WHERE event_id = :e"
                        ),
                        {"e": poison},
                    )
                ).one()
            deaths = sum(r.deaths for r in relays)
            scenario.figures["dead_after_attempts"] = row.attempts
            scenario.figures["process_deaths"] = deaths
            scenario.notes.append(
                f"handler killing its process: dead-lettered after {row.attempts} attempts"
                f" ({deaths} processes died, {took:.1f} s), last error: {row.last_error}"
            )
            if row.attempts != relay_probe.SUICIDE_ATTEMPTS or not row.last_error:
                scenario.problems.append("the process-killing handler was not dead-lettered in time")

            everything = first + slow + load
            total = int(
                await scalar(
                    "SELECT count(*) FROM relay_probe.handled WHERE event_id = ANY(:ids)", ids=everything
                )
            )
            scenario.events_committed = len(everything)
            scenario.events_delivered = await handled(everything)
            scenario.duplicates = total - scenario.events_delivered
            scenario.figures["lost"] = scenario.events_committed - scenario.events_delivered
        finally:
            for r in relays:
                await r.stop()
            await db.dispose()
            await admin.dispose()
    scenario.check()
    return scenario


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _at_least(value: Any, expected: int) -> bool:
    return bool(await value >= expected)


async def _rows(engine: Any, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


# --- the runner -------------------------------------------------------------------------------------


async def run_all(seconds: float = 2.0) -> list[Scenario]:
    from core.embedded import DATABASE, ensure_database
    from core.embedded import start as start_embedded

    data_dir = ROOT / ".atlilith" / "resilience"
    admin = os.environ.get("DATABASE_URL")
    embedded = None
    if not admin:
        embedded = start_embedded(data_dir / "main-pg")
        admin = embedded.url(DATABASE)
        await ensure_database(admin, DATABASE)
    try:
        return [
            await kill9_under_load(admin, data_dir, seconds=seconds),
            await postgres_restart_under_load(data_dir, seconds=seconds),
            await inngest_outage_under_load(admin, data_dir, seconds=seconds),
            await two_relays(admin, data_dir),
        ]
    finally:
        if embedded is not None:
            embedded.stop()


def main() -> None:
    """`./run resilience`: run every scenario, print the report, exit 1 if any failed."""
    from core.observability import configure_logging

    configure_logging(Settings(log_level="warning", log_format="json"))
    scenarios = asyncio.run(run_all(seconds=float(os.environ.get("RESILIENCE_SECONDS", "2"))))
    print(render(scenarios), flush=True)
    sys.exit(0 if all(s.ok for s in scenarios) else 1)


if __name__ == "__main__":
    main()
