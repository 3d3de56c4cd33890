"""Bookings: slot computation for a provider with a month of bookings against a bare route that
reads the provider's busy rows (JWT, one statement), and booking creation through REST and MCP
against a bare route's INSERTs into the same constrained table, in one run."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx

from benchmarks.common import (
    CONCURRENCY,
    SECONDS,
    Result,
    Row,
    Target,
    bench_database,
    install,
    mcp_call,
    mcp_headers,
    near_rest,
    server,
    side_by_side,
    table,
)
from benchmarks.people import acting, join, person
from core import bookings
from core.bookings.schemas import AvailabilityIn, ServiceIn, SlotsQuery, WeeklyHours
from core.db import asyncpg_dsn, start_statement_count
from core.opener import open_context
from core.tenancy import create_org
from core.tenancy.schemas import OrgIn
from core.uow import Database

PROVIDERS = 8
REST_SLOTS = "GET /v1/bookings/slots (31 days)"
REST_HOLD = "POST /v1/bookings/holds"
STEP = dt.timedelta(minutes=15)


async def _setup(db: Database) -> dict[str, Any]:
    owner = await person(db, "bench-owner", "owner@bench.example", "O")
    people = [await person(db, f"bench-pro-{i}", f"p{i}@bench.example", f"P{i}") for i in range(PROVIDERS)]
    async with acting(db, owner.access_token) as (ctx, uow):
        org = await create_org(ctx, uow, OrgIn(slug="bench-salon", name="Bench salon"))
    for p in people:
        await join(db, owner, org.slug, p)
    async with acting(db, owner.access_token, org.slug) as (ctx, uow):
        all_day = [
            WeeklyHours(weekday=d, start="00:00", end="24:00")
            for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        ]
        for p in people[1:]:
            await bookings.set_availability(
                ctx, uow, p.person.slug, AvailabilityIn(time_zone="UTC", weekly=all_day)
            )
        workday = [
            WeeklyHours(weekday=d, start="08:00", end="20:00")
            for d in ("mon", "tue", "wed", "thu", "fri", "sat")
        ]
        await bookings.set_availability(
            ctx, uow, people[0].person.slug, AvailabilityIn(time_zone="Europe/Paris", weekly=workday)
        )
        busy = await bookings.create_service(
            ctx,
            uow,
            ServiceIn(
                name="Cut",
                duration_minutes=45,
                buffer_after_minutes=15,
                slot_interval_minutes=15,
                providers=[people[0].person.slug],
            ),
        )
        quick = await bookings.create_service(
            ctx,
            uow,
            ServiceIn(
                name="Quick",
                duration_minutes=15,
                slot_interval_minutes=15,
                max_advance_days=730,
                providers=[p.person.slug for p in people[1:]],
            ),
        )
    return {"owner": owner, "people": people, "org": org, "busy": busy, "quick": quick}


async def _month_of_bookings(dsn: str, env: dict[str, Any]) -> int:
    """About eight confirmed bookings a working day for a month, straight into the table."""
    provider = env["people"][0].person.id
    tomorrow = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) + dt.timedelta(
        days=1
    )
    rows = []
    for day in range(31):
        for hour in (8, 9, 11, 12, 14, 15, 17, 18):
            start = tomorrow + dt.timedelta(days=day, hours=hour)
            rows.append((uuid.uuid4(), env["busy"].id, provider, start, start + dt.timedelta(minutes=45)))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO bookings.bookings (id, service_id, provider_id, status, start_at, end_at,"
            " buffer_after_minutes, location_kind, person_id, org_id)"
            " VALUES ($1, $2, $3, 'confirmed', $4, $5, 15, 'in_person', $3, $6)",
            [(*r, env["org"].id) for r in rows],
        )
    finally:
        await conn.close()
    return len(rows)


async def _timed(label: str, call: Callable[[], Awaitable[int]], seconds: float = SECONDS) -> Result:
    """Like common.side_by_side's rows, for in-process calls: `call` returns the statements it used."""
    result = Result(label)
    warm_until = time.perf_counter() + min(1.0, seconds / 4)
    while time.perf_counter() < warm_until:
        await call()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                statements = await call()
            except Exception:
                result.errors += 1
                continue
            result.latencies.append(time.perf_counter() - t0)
            result.statements.append(statements)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    result.elapsed = time.perf_counter() - started
    return result


async def run() -> str:
    async with bench_database() as settings:
        db = Database(settings)
        env = await _setup(db)
        admin_dsn = asyncpg_dsn(settings.database_url or "")
        month = await _month_of_bookings(admin_dsn, env)
        owner_token, org = env["owner"].access_token, env["org"].slug
        busy_id, quick_id = env["busy"].id, env["quick"].id
        first = dt.date.today() + dt.timedelta(days=1)
        last = first + dt.timedelta(days=30)
        query = SlotsQuery(service_id=busy_id, from_date=first, to_date=last, time_zone="America/New_York")

        async def in_process() -> int:
            stats = start_statement_count()
            async with db.uow() as uow:
                ctx = await open_context(uow, owner_token, org)
                out = await bookings.find_slots(ctx, uow, query)
                assert out.slots
            return stats.count

        pool = await asyncpg.create_pool(admin_dsn, min_size=2, max_size=CONCURRENCY + 2)
        assert pool is not None
        provider0 = env["people"][0].person.id

        # The busy time a search over these dates must read: from the first day's midnight in the
        # requester's zone to the day after the last, widened by a slot and its buffer.
        zone = ZoneInfo("America/New_York")
        busy_from = dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        busy_to = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
        busy_to += dt.timedelta(hours=1)

        async def busy_only() -> int:
            await pool.fetch(
                "SELECT lower(blocked), upper(blocked) FROM bookings.bookings WHERE provider_id = $1"
                " AND blocked && tstzrange($2, $3) AND status IN ('held','requested','confirmed')",
                provider0,
                busy_from,
                busy_to,
            )
            return 1

        busy_params = {
            "provider_id": str(provider0),
            "from": busy_from.isoformat(),
            "to": busy_to.isoformat(),
        }

        headers = {"Authorization": f"Bearer {owner_token}", "X-Atlilith-Org": org}
        slots_headers = mcp_headers({"Authorization": f"Bearer {owner_token}"}, "bookings_slots")
        hold_headers = mcp_headers({"Authorization": f"Bearer {owner_token}"}, "bookings_hold")
        params = {
            "service_id": str(busy_id),
            "from_date": str(first),
            "to_date": str(last),
            "time_zone": "America/New_York",
        }

        slots_call = mcp_call("bookings_slots", {**params, "org": org})
        slugs = [p.person.slug for p in env["people"][1:]]
        ids = [p.person.id for p in env["people"][1:]]
        start0 = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        # Disjoint slot ranges per door; each request takes the next free slot of the next provider.
        rest_n, mcp_n, raw_n, bare_n = (
            itertools.count(),
            itertools.count(),
            itertools.count(),
            itertools.count(),
        )

        def slot(counter: itertools.count[int], offset_days: int) -> tuple[int, dt.datetime]:
            i = next(counter)
            return i % len(slugs), start0 + dt.timedelta(days=offset_days) + (i // len(slugs)) * STEP

        def rest_hold(c: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            p, start = slot(rest_n, 0)
            body = {"service_id": str(quick_id), "start_at": start.isoformat(), "provider": slugs[p]}
            return c.post("/v1/bookings/holds", json=body, headers=headers)

        async def mcp_hold(c: httpx.AsyncClient) -> httpx.Response:
            p, start = slot(mcp_n, 200)
            args = {
                "service_id": str(quick_id),
                "start_at": start.isoformat(),
                "provider": slugs[p],
                "org": org,
            }
            r = await c.post("/mcp", content=mcp_call("bookings_hold", args), headers=hold_headers)
            if '"isError":true' in r.text:
                return httpx.Response(409, headers=r.headers)
            return r

        def bare_hold(c: httpx.AsyncClient) -> Awaitable[httpx.Response]:
            p, start = slot(bare_n, 600)
            body = {
                "service_id": str(quick_id),
                "start_at": start.isoformat(),
                "provider_id": str(ids[p]),
                "org_id": str(env["org"].id),
            }
            return c.post("/bench/bare/hold", json=body, headers=headers)

        async def raw_insert() -> int:
            p, start = slot(raw_n, 400)
            await pool.execute(
                "INSERT INTO bookings.bookings (id, service_id, provider_id, status, start_at, end_at,"
                " hold_expires_at, location_kind, person_id, org_id)"
                " VALUES ($1, $2, $3, 'held', $4, $5, now() + interval '5 minutes', 'in_person', $6, $7)",
                uuid.uuid4(),
                quick_id,
                ids[p],
                start,
                start + STEP,
                env["owner"].person.id,
                env["org"].id,
            )
            return 1

        previous = os.environ.get("ATLILITH_TOOLSETS")
        os.environ["ATLILITH_TOOLSETS"] = "all"
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        try:
            async with (
                server(settings) as base,
                httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client,
            ):
                await install(client, headers, "bookings")
                check = await client.post("/mcp", content=slots_call, headers=slots_headers)
                assert check.status_code == 200 and '"isError":false' in check.text, check.text[:500]
                # Every door answers the same slots: exactly those the baseline's busy rows leave
                # free in the provider's hours, found one wall-clock step at a time.
                rest_answer = (await client.get("/v1/bookings/slots", params=params, headers=headers)).json()
                mcp_answer = json.loads(check.text)["result"]["structuredContent"]
                assert rest_answer["slots"] == mcp_answer["slots"] and rest_answer["slots"], rest_answer
                bare_answer = (
                    await client.get("/bench/bare/busy", params=busy_params, headers=headers)
                ).json()
                expected = _expected_slots(bare_answer["busy"], first, last, env["people"][0].person.slug)
                assert rest_answer["slots"] == expected, (rest_answer["slots"][:3], expected[:3])
                assert not rest_answer["truncated"]
                raw_busy = await _timed("raw asyncpg busy rows in-process", busy_only)
                local = await _timed("find_slots in-process (31 days)", in_process)
                bare_busy, rest_slots, mcp_slots = await side_by_side(
                    client,
                    Row(
                        "bare route (JWT, busy rows)",
                        lambda c: c.get("/bench/bare/busy", params=busy_params, headers=headers),
                    ),
                    Row(
                        REST_SLOTS,
                        lambda c: c.get("/v1/bookings/slots", params=params, headers=headers),
                        Target(min_ratio=0.3),
                    ),
                    Row(
                        "MCP bookings_slots (31 days)",
                        lambda c: c.post("/mcp", content=slots_call, headers=slots_headers),
                        near_rest(REST_SLOTS),
                    ),
                )
                await _same_hold(client, headers, rest_hold, bare_hold)
                raw = await _timed("raw asyncpg INSERT in-process", raw_insert)
                bare, rest, mcp = await side_by_side(
                    client,
                    Row("bare route (JWT, INSERT + outbox)", bare_hold),
                    Row(REST_HOLD, rest_hold, Target(min_ratio=0.5, max_sql=4)),
                    Row("MCP bookings_hold over HTTP", mcp_hold, near_rest(REST_HOLD)),
                )
        finally:
            if previous is None:
                os.environ.pop("ATLILITH_TOOLSETS", None)
            else:
                os.environ["ATLILITH_TOOLSETS"] = previous
            await pool.close()
            await db.dispose()
        counts = await _count(admin_dsn, quick_id)
        note = (
            f"\n  provider with {month} bookings in the month; slot queries span 31 days"
            f" (results capped at {bookings.MAX_SLOTS})\n  bookings made: {counts} (every one accepted by"
            " ex_bookings_no_overlap; errors = refused requests)"
        )
        return (
            table(
                "Slot computation, a month of bookings",
                [bare_busy, raw_busy, local, rest_slots, mcp_slots],
                bare_busy,
            )
            + "\n"
            + table("Booking creation (hold), same constrained table", [bare, raw, rest, mcp], bare)
            + note
        )


def _expected_slots(
    busy: list[list[str]], first: dt.date, last: dt.date, provider: str
) -> list[dict[str, Any]]:
    """The answer the search must give, by the obvious definition and nothing of core's: each
    15-minute wall-clock step of the provider's 08:00-20:00 (Europe/Paris, Monday to Saturday)
    whose 45 minutes fit before 20:00, that starts between the requester's first and last day (New
    York) and whose 45 minutes plus the 15-minute buffer after meet no busy range."""
    paris, new_york = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
    start = dt.datetime.combine(first, dt.time(), tzinfo=new_york)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=new_york)
    taken = [(dt.datetime.fromisoformat(a), dt.datetime.fromisoformat(b)) for a, b in busy]
    length, buffer = dt.timedelta(minutes=45), dt.timedelta(minutes=15)
    found = []
    day = first - dt.timedelta(days=1)
    while day <= last + dt.timedelta(days=1):
        close = dt.datetime.combine(day, dt.time(20), tzinfo=paris).astimezone(dt.UTC)
        local = dt.datetime.combine(day, dt.time(8))
        # Compared in UTC: two datetimes of one tzinfo compare (and add) on the wall clock.
        while day.weekday() < 6 and (at := local.replace(tzinfo=paris).astimezone(dt.UTC)) + length <= close:
            if start <= at < end and not any(a < at + length + buffer and at < b for a, b in taken):
                found.append(
                    {
                        "start": at.astimezone(new_york).isoformat(),
                        "end": (at + length).astimezone(new_york).isoformat(),
                        "providers": [provider],
                    }
                )
            local += STEP
        day += dt.timedelta(days=1)
    return found


async def _same_hold(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    rest: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
    bare: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]],
) -> None:
    """The baseline answers what the door answers: a held booking of the service's length."""
    answers = [(await door(client)).json() for door in (rest, bare)]
    for answer in answers:
        assert answer["status"] == "held", answer
    lengths = [
        dt.datetime.fromisoformat(a["end_at"]) - dt.datetime.fromisoformat(a["start_at"]) for a in answers
    ]
    assert lengths[0] == lengths[1] == STEP, lengths


async def _count(dsn: str, service_id: uuid.UUID) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM bookings.bookings WHERE service_id = $1", service_id)
        )
    finally:
        await conn.close()
