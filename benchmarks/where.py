"""Where a request's time goes: CPU per request in the server process and in PostgreSQL's
backends, for each door beside its bare route, measured from /proc (Linux) while a few clients
send a fixed number of requests to the bench server in its own process.

    python -m benchmarks.where [me] [hold] [run] [slots]      (REQUESTS=2000 by default)

Throughput on a shared machine moves with everything else running; CPU time per request does
not, so this is the figure to compare an optimisation by (the ratios of `./run bench` are the
targets)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from benchmarks.bench_billing import _person as credited_person
from benchmarks.bench_bookings import _month_of_bookings as month_of_bookings
from benchmarks.bench_bookings import _setup as bookings_world
from benchmarks.common import bench_database, install, mcp_call, mcp_headers, server
from benchmarks.people import person
from core.db import asyncpg_dsn
from core.uow import Database
from servers.registry_sync import sync_builtins

REQUESTS = int(os.environ.get("REQUESTS", "2000"))
CLIENTS = 4
TICK = os.sysconf("SC_CLK_TCK")
Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _sample(pid: int, label: str) -> subprocess.Popen[bytes] | None:
    """With WHERE_PYSPY=<py-spy binary> (not a dependency: `pip install py-spy` anywhere), the
    server sampled during the measurement, as collapsed stacks in WHERE_OUT (default /tmp)."""
    binary = os.environ.get("WHERE_PYSPY")
    if not binary:
        return None
    name = "where-" + re.sub(r"\W+", "-", label).strip("-") + ".txt"
    out = Path(os.environ.get("WHERE_OUT", "/tmp")) / name
    command = [binary, "record", "-p", str(pid), "-r", "500", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _server_pid(port: int) -> int:
    """The bench server is this process's child whose environment names its port."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            environ = (entry / "environ").read_bytes()
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            continue
        if stat[1] == me and f"ATLILITH_PORT={port}".encode() in environ:
            return int(entry.name)
    raise RuntimeError("bench server process not found")


@dataclass
class Row:
    label: str
    server_us: float
    postgres_us: float
    statements: str
    failed: int
    client_us: float = 0.0


async def _repeat(send: Send, client: httpx.AsyncClient, times: int) -> None:
    for _ in range(times):
        await send(client)


async def _measure(label: str, send: Send, client: httpx.AsyncClient, server_pid: int, dsn: str) -> Row:
    # Warm with as many clients as the measurement (prepared statements, caches, and every pooled
    # connection open, so that the backends read below are all the ones that will do the work).
    await asyncio.gather(*(_repeat(send, client, 50) for _ in range(CLIENTS)))
    async with asyncpg.create_pool(dsn, min_size=1, max_size=1) as admin:
        database = await admin.fetchval("SELECT current_database()")
        backends = [
            r["pid"]
            for r in await admin.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
            )
        ]
        counter = itertools.count()
        failed = 0
        statements: set[str] = set()
        spy = _sample(server_pid, label)
        before = _cpu_seconds([server_pid]), _cpu_seconds(backends)
        client_before = time.process_time()

        async def worker() -> None:
            nonlocal failed
            while next(counter) < REQUESTS:
                response = await send(client)
                failed += response.status_code >= 400
                statements.add(response.headers.get("x-db-statements", "?"))

        await asyncio.gather(*(worker() for _ in range(CLIENTS)))
        after = _cpu_seconds([server_pid]), _cpu_seconds(backends)
        client_cpu = time.process_time() - client_before
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
    per = 1e6 / REQUESTS
    sql = "/".join(sorted(statements))
    server_us, postgres_us = (after[0] - before[0]) * per, (after[1] - before[1]) * per
    return Row(label, server_us, postgres_us, sql, failed, client_cpu * per)


async def _me(client: httpx.AsyncClient, db: Database) -> list[tuple[str, Send]]:
    auth = await person(db, "where-me", "where-me@example.com", "Where")
    headers = {"Authorization": f"Bearer {auth.access_token}"}
    whoami, whoami_headers = mcp_call("whoami", {}), mcp_headers(headers, "whoami")
    return [
        ("bare /me", lambda c: c.get("/bench/bare/me", headers=headers)),
        ("GET /v1/me", lambda c: c.get("/v1/me", headers=headers)),
        ("MCP whoami", lambda c: c.post("/mcp", content=whoami, headers=whoami_headers)),
    ]


async def _hold(client: httpx.AsyncClient, db: Database) -> list[tuple[str, Send]]:
    env = await bookings_world(db)
    token, org, quick = env["owner"].access_token, env["org"].slug, env["quick"].id
    headers = {"Authorization": f"Bearer {token}", "X-Atlilith-Org": org}
    people = env["people"][1:]
    midnight = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start0, step = midnight + dt.timedelta(days=2), dt.timedelta(minutes=15)
    rest_n, bare_n = itertools.count(), itertools.count()

    def slot(counter: itertools.count[int], offset_days: int) -> tuple[int, dt.datetime]:
        i = next(counter)
        return i % len(people), start0 + dt.timedelta(days=offset_days) + (i // len(people)) * step

    def rest(c: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        p, start = slot(rest_n, 0)
        body = {"service_id": str(quick), "start_at": start.isoformat(), "provider": people[p].person.slug}
        return c.post("/v1/bookings/holds", json=body, headers=headers)

    def bare(c: httpx.AsyncClient) -> Awaitable[httpx.Response]:
        p, start = slot(bare_n, 600)
        body = {
            "service_id": str(quick),
            "start_at": start.isoformat(),
            "provider_id": str(people[p].person.id),
            "org_id": str(env["org"].id),
        }
        return c.post("/bench/bare/hold", json=body, headers=headers)

    return [("bare hold", bare), ("POST /v1/bookings/holds", rest)]


async def _slots(client: httpx.AsyncClient, db: Database) -> list[tuple[str, Send]]:
    """A large answer (a month of slots around a month of bookings): what each door adds to the
    same search. Needs the server to serve the bookings toolset (ATLILITH_TOOLSETS=all)."""
    env = await bookings_world(db)
    await month_of_bookings(asyncpg_dsn(db.settings.database_url or ""), env)
    token, org = env["owner"].access_token, env["org"].slug
    first = dt.date.today() + dt.timedelta(days=1)
    params = {
        "service_id": str(env["busy"].id),
        "from_date": str(first),
        "to_date": str(first + dt.timedelta(days=30)),
        "time_zone": "America/New_York",
    }
    headers = {"Authorization": f"Bearer {token}", "X-Atlilith-Org": org}
    call = mcp_call("bookings_slots", {**params, "org": org})
    call_headers = mcp_headers({"Authorization": f"Bearer {token}"}, "bookings_slots")
    await install(client, headers, "bookings")
    check = await client.post("/mcp", content=call, headers=call_headers)
    assert '"isError":false' in check.text, check.text[:300]
    return [
        ("GET /v1/bookings/slots", lambda c: c.get("/v1/bookings/slots", params=params, headers=headers)),
        ("MCP bookings_slots", lambda c: c.post("/mcp", content=call, headers=call_headers)),
    ]


RUN_PATH = "/v1/run/identity/resolve-person"


async def _run(client: httpx.AsyncClient, db: Database) -> list[tuple[str, Send]]:
    await sync_builtins(db)
    token, _ = await credited_person(db, "where-jobs", 10_000_000, "identity")
    headers = {"Authorization": f"Bearer {token}"}
    counter = itertools.count()

    def body() -> dict[str, object]:
        return {"input": {"email": f"w{next(counter)}@example.com"}}

    return [
        ("bare run", lambda c: c.post("/bench/bare/run", json=body(), headers=headers)),
        ("POST /v1/run/identity/…", lambda c: c.post(RUN_PATH, json=body(), headers=headers)),
    ]


SCENARIOS = {"me": _me, "hold": _hold, "run": _run, "slots": _slots}


async def main(names: list[str]) -> None:
    async with bench_database() as settings:
        db = Database(settings)
        dsn = asyncpg_dsn(settings.database_url or "")
        async with server(settings) as base, httpx.AsyncClient(base_url=base, timeout=30) as client:
            pid = _server_pid(int(base.rsplit(":", 1)[1]))
            rows = []
            for name in names:
                for label, send in await SCENARIOS[name](client, db):
                    rows.append(await _measure(label, send, client, pid, dsn))
        await db.dispose()
    print(f"CPU per request ({REQUESTS} requests, {CLIENTS} clients)")
    # The load generator's own CPU (this process: httpx) is shown apart: on 2 cores it competes
    # with the server for the same CPUs, so a request that costs the client more is slower
    # under load than its server and PostgreSQL CPU alone say.
    head = f"{'server µs':>10} {'postgres µs':>12} {'total µs':>10} {'client µs':>10} {'failed':>7}"
    print(f"  {'request':28} {'SQL':>4} {head}")
    for r in rows:
        total = r.server_us + r.postgres_us
        cpu = f"{r.server_us:10.0f} {r.postgres_us:12.0f} {total:10.0f} {r.client_us:10.0f}"
        print(f"  {r.label:28} {r.statements:>4} {cpu} {r.failed:7d}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or list(SCENARIOS)))
