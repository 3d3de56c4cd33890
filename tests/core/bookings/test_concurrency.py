"""No double booking under concurrency, through every door: 50 parallel holds for one slot over
REST and over MCP give exactly one booking; personal and org contexts share one calendar."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
from mcp import Client

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import make_org, signup
from tests.core.bookings.helpers import admin, at, day_ahead, make_service, round_robin_team, set_hours, slots
from tests.support.mcp import tool_error
from tests.support.registry import install


async def _count(db: Database, provider_id: str) -> int:
    rows = await admin(
        db,
        "SELECT count(*) FROM bookings.bookings WHERE provider_id = :p AND status IN ('held','requested','confirmed')",
        {"p": provider_id},
    )
    return int(rows[0][0])


async def test_fifty_parallel_rest_holds_for_one_slot_make_exactly_one_booking(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a, buffer_after_minutes=10)
    day = day_ahead(6)
    body = {"service_id": svc["id"], "start_at": at(day, "10:00")}
    responses = await asyncio.gather(
        *(
            client.post(
                "/v1/bookings/holds", json={**body, "client_email": f"c{i}@example.com"}, headers=a.h()
            )
            for i in range(50)
        )
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 409: 49}, codes
    refused = [r.json() for r in responses if r.status_code == 409]
    assert {p["code"] for p in refused} == {"slot_taken"}
    assert all("slots" in p["hint"] and p["type"].endswith("slot_taken") for p in refused)
    assert await _count(db, a.id) == 1
    # The slot is gone from the offer, and so are its neighbours: a 10 minute buffer after each
    # booking makes 09:00 (ends 10:10) and 11:00 (within 10:00-11:10) collide with it.
    offered = [s["start"] for s in await slots(client, a, svc["id"], day, day, time_zone="Europe/Paris")]
    assert offered == [at(day, f"{h}:00") for h in (12, 13, 14, 15, 16)]


async def test_fifty_parallel_mcp_holds_for_one_slot_make_exactly_one_booking(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    await set_hours(client, a, org=org)
    svc = await make_service(client, a, org=org)
    start = at(day_ahead(8), "15:00")
    await install(client, a, "bookings", org=org)
    async with Client(build_server(db, static_token=a.token, toolset_names=["bookings"])) as c:
        results = await asyncio.gather(
            *(
                c.call_tool("bookings_hold", {"service_id": svc["id"], "start_at": start, "org": org})
                for _ in range(50)
            )
        )
    ok = [r for r in results if not r.is_error]
    errors = [tool_error(r) for r in results if r.is_error]
    assert len(ok) == 1 and len(errors) == 49, Counter(e["code"] for e in errors)
    assert {e["code"] for e in errors} == {"slot_taken"} and all(e["hint"] for e in errors)
    assert ok[0].structured_content["status"] == "held"
    assert await _count(db, a.id) == 1


async def test_one_calendar_across_contexts_and_no_details_leak(
    client: httpx.AsyncClient, db: Database
) -> None:
    """A provider's personal booking blocks the same time in their org (and the reverse), in
    parallel too; the refusal says nothing about the other booking."""
    a = await signup(client)
    org = await make_org(client, a)
    await set_hours(client, a)
    await set_hours(client, a, org=org)
    personal = await make_service(client, a)
    in_org = await make_service(client, a, org=org)
    day = day_ahead(9)
    secret = "Top Secret Client"
    r = await client.post(
        "/v1/bookings/requests",
        json={
            "service_id": personal["id"],
            "start_at": at(day, "11:00"),
            "client_name": secret,
            "client_email": "secret@example.com",
            "notes": "private-notes",
        },
        headers=a.h(),
    )
    assert r.status_code == 201, r.text
    clash = await client.post(
        "/v1/bookings/holds",
        json={"service_id": in_org["id"], "start_at": at(day, "11:30")},
        headers=a.h(org=org),
    )
    assert clash.status_code == 409 and clash.json()["code"] == "slot_taken"
    for leak in (r.json()["id"], secret, "private-notes", "secret@example.com"):
        assert leak not in clash.text
    offered = [
        s["start"] for s in await slots(client, a, in_org["id"], day, day, org=org, time_zone="Europe/Paris")
    ]
    assert at(day, "11:00") not in offered and at(day, "12:00") in offered

    # In parallel, personal and org holds for one time: one wins.
    both = await asyncio.gather(
        *(
            client.post("/v1/bookings/holds", json={"service_id": s, "start_at": at(day, "15:00")}, headers=h)
            for s, h in [(personal["id"], a.h()), (in_org["id"], a.h(org=org))] * 10
        )
    )
    assert Counter(x.status_code for x in both) == {201: 1, 409: 19}


async def test_round_robin_under_load_books_every_free_provider_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner, org, (b, c), svc = await round_robin_team(client, 2)
    start = at(day_ahead(10), "09:00")
    results = await asyncio.gather(
        *(
            client.post(
                "/v1/bookings/holds",
                json={"service_id": svc["id"], "start_at": start},
                headers=owner.h(org=org),
            )
            for _ in range(30)
        )
    )
    assert Counter(r.status_code for r in results) == {201: 2, 409: 28}
    assert {r.json()["provider"]["slug"] for r in results if r.status_code == 201} == {b.slug, c.slug}
    assert json.dumps([r.json()["code"] for r in results if r.status_code == 409]).count("slot_taken") == 28
