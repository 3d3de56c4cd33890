"""Shared set-up for bookings tests: providers with hours, services, dates in the future."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from tests.conftest import Account, join_org, make_org, signup

EVERY_DAY = [
    {"weekday": d, "start": "09:00", "end": "17:00"}
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
]

ALL_DAY = [
    {"weekday": d, "start": "00:00", "end": "24:00"}
    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
]


async def set_hours(
    client: httpx.AsyncClient,
    who: Account,
    *,
    org: str | None = None,
    provider: str | None = None,
    time_zone: str = "Europe/Paris",
    weekly: list[dict[str, str]] | None = None,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    r = await client.put(
        "/v1/bookings/availability",
        params={"provider": provider} if provider else None,
        json={
            "time_zone": time_zone,
            "weekly": EVERY_DAY if weekly is None else weekly,
            "overrides": overrides or [],
        },
        headers=who.h(org=org),
    )
    assert r.status_code == 200, r.text
    hours: dict[str, Any] = r.json()
    return hours


async def make_service(
    client: httpx.AsyncClient, who: Account, *, org: str | None = None, **fields: Any
) -> dict[str, Any]:
    body = {"name": f"Service {dt.datetime.now().timestamp()}", "duration_minutes": 60, **fields}
    r = await client.post("/v1/bookings/services", json=body, headers=who.h(org=org))
    assert r.status_code == 201, r.text
    service: dict[str, Any] = r.json()
    return service


async def hold(
    client: httpx.AsyncClient, who: Account, *, org: str | None = None, **fields: Any
) -> httpx.Response:
    """`who` holds a slot (`service_id`, `start_at` and any other field of the hold), asserted
    201; the response, for its body and headers."""
    r = await client.post("/v1/bookings/holds", json=fields, headers=who.h(org=org))
    assert r.status_code == 201, r.text
    return r


async def round_robin_team(
    client: httpx.AsyncClient, size: int
) -> tuple[Account, str, list[Account], dict[str, Any]]:
    """An owner, their org, `size` new members with hours every day, and a round-robin service
    they all deliver."""
    owner = await signup(client)
    org = await make_org(client, owner)
    team = [await signup(client) for _ in range(size)]
    for person in team:
        await join_org(client, org, owner, person)
        await set_hours(client, owner, org=org, provider=person.slug)
    svc = await make_service(
        client, owner, org=org, assignment="round_robin", providers=[p.slug for p in team]
    )
    return owner, org, team, svc


def day_ahead(days: int = 7, zone: str = "Europe/Paris") -> dt.date:
    return dt.datetime.now(ZoneInfo(zone)).date() + dt.timedelta(days=days)


def next_fall_back(zone: ZoneInfo) -> dt.date:
    """The next 25-hour day in `zone` clear of the notice (within a year, so inside an advance
    limit of 730 days)."""
    day = dt.date.today() + dt.timedelta(days=2)
    while True:
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        following = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(dt.UTC)
        if following - midnight == dt.timedelta(hours=25):
            return day
        day += dt.timedelta(days=1)


def at(day: dt.date, clock: str, zone: str = "Europe/Paris") -> str:
    hh, mm = (int(x) for x in clock.split(":"))
    return dt.datetime.combine(day, dt.time(hh, mm), tzinfo=ZoneInfo(zone)).isoformat()


async def slots(
    client: httpx.AsyncClient, who: Account, service_id: str, start: dt.date, end: dt.date, **params: Any
) -> list[dict[str, Any]]:
    org = params.pop("org", None)
    r = await client.get(
        "/v1/bookings/slots",
        params={"service_id": service_id, "from_date": str(start), "to_date": str(end), **params},
        headers=who.h(org=org),
    )
    assert r.status_code == 200, r.text
    return list(r.json()["slots"])


async def admin(db: Any, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
    """Raw SQL as the migration superuser: to move a booking's clock, or look behind RLS."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from core.db import asyncpg_url

    engine = create_async_engine(asyncpg_url(db.settings.database_url))
    try:
        async with engine.begin() as conn:
            result = await conn.execute(text(sql), params or {})
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def events(db: Any, name: str, booking_id: str) -> list[dict[str, Any]]:
    rows = await admin(
        db,
        "SELECT data FROM platform.outbox WHERE name = :n AND data->>'booking_id' = :b ORDER BY seq",
        {"n": name, "b": booking_id},
    )
    return [r[0] for r in rows]
