"""NUL in free text and far dates, through both doors: a clear 422 / `invalid_arguments` naming
the field, never a 500 or `internal_error` (issue 17, items 2 and 3)."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from mcp import Client

from core.uow import Database
from servers.api import api_routers
from servers.api.deps import CheckedRoute
from servers.mcp import build_server
from tests.conftest import Account, signup
from tests.core.bookings.helpers import at, day_ahead, hold, make_service, set_hours
from tests.support.mcp import tool_error
from tests.support.registry import install

NUL = "Ada\x00Lovelace"
EXTREMES = ("0001-01-01", "9999-12-31")


def refused(r: httpx.Response, field: str) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    assert body["code"] == "validation_failed", body
    assert field in {e["field"] for e in body["errors"]}, body


def mcp_refused(result: Any, field: str) -> None:
    body = tool_error(result)
    assert body["code"] == "invalid_arguments", body
    assert field in {f["path"] for f in body["fields"]}, body


async def booking_world(client: httpx.AsyncClient) -> tuple[Account, str, str]:
    a = await signup(client)
    await install(client, a, "bookings")
    await set_hours(client, a)
    service = await make_service(client, a)
    day = day_ahead(7)
    held = await hold(
        client, a, service_id=service["id"], start_at=at(day, "10:00"), client_email="c@example.com"
    )
    return a, service["id"], held.json()["id"]


async def test_nul_in_text_is_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    h = a.h()
    refused(await client.post("/v1/clients", json={"name": NUL}, headers=h), "name")
    refused(await client.post("/v1/clients", json={"name": "Ada", "notes": "x\x00"}, headers=h), "notes")
    refused(await client.post("/v1/orgs", json={"name": NUL, "slug": "nul-org-x"}, headers=h), "name")
    refused(await client.get("/v1/clients", params={"q": "a\x00"}, headers=h), "q")
    await install(client, a, "bookings")
    refused(await make_raw_service(client, a, {"name": NUL, "duration_minutes": 30}), "name")
    for config in ({"k\x00": 1}, {"k": ["x\x00"]}):
        r = await client.patch("/v1/installations/bookings", json={"config": config}, headers=h)
        refused(r, "config")
    # Nothing half-saved: the client list holds none of them.
    listed = (await client.get("/v1/clients", headers=h)).json()["items"]
    assert listed == []
    # Tabs and line breaks are text.
    ok = await client.post("/v1/clients", json={"name": "Ada", "notes": "one\ttwo\nthree"}, headers=h)
    assert ok.status_code == 201 and ok.json()["notes"] == "one\ttwo\nthree", ok.text


async def test_every_route_checks_its_query_text(app: FastAPI, client: httpx.AsyncClient) -> None:
    """The text check is the routes' own (`servers.api.deps.CheckedRoute`), not a dependency: a
    route of another class would skip it, untyped parameters included."""
    routes = [
        r
        for r in [*app.routes, *(r for router in api_routers() for r in router.routes)]
        if isinstance(r, APIRoute)
    ]
    assert routes and all(isinstance(r, CheckedRoute) for r in routes), [
        r.path for r in routes if not isinstance(r, CheckedRoute)
    ]
    # An untyped parameter of a route on the app itself, and of a feature router's route.
    refused(await client.get("/health", params={"probe": "a\x00"}), "probe")
    refused(await client.get("/v1/meta", params={"q": "a\x00"}), "q")


async def make_raw_service(client: httpx.AsyncClient, who: Account, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/bookings/services", json=body, headers=who.h())


async def test_nul_over_mcp_is_invalid_arguments(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token, toolset_names=["tenancy"])) as c:
        mcp_refused(await c.call_tool("clients_create", {"name": NUL}), "name")
        mcp_refused(await c.call_tool("clients_create", {"name": "Ada", "notes": "\x00"}), "notes")
        mcp_refused(await c.call_tool("clients_list", {"q": "a\x00"}), "q")


async def test_far_dates_are_a_422_at_both_doors(client: httpx.AsyncClient, db: Database) -> None:
    a, service_id, booking_id = await booking_world(client)
    h = a.h()
    far = {"service_id": service_id, "from_date": "9999-12-30", "to_date": "9999-12-31"}
    r = await client.get("/v1/bookings/slots", params=far, headers=h)
    refused(r, "from_date")
    assert "between" in json.dumps(r.json())
    for day in EXTREMES:
        r = await client.get(
            "/v1/bookings/slots",
            params={"service_id": service_id, "from_date": day, "to_date": day},
            headers=h,
        )
        refused(r, "from_date")
        for zone in ("+14:00", "-12:00"):
            start = f"{day}T00:00:00{zone}" if day.startswith("0001") else f"{day}T23:00:00{zone}"
            hold = {"service_id": service_id, "start_at": start, "client_email": "c@example.com"}
            refused(await client.post("/v1/bookings/holds", json=hold, headers=h), "start_at")
            moved = await client.post(
                f"/v1/bookings/{booking_id}/reschedule", json={"start_at": start}, headers=h
            )
            refused(moved, "start_at")
            listed = await client.get("/v1/bookings", params={"from_at": start}, headers=h)
            refused(listed, "from_at")
        override = {"time_zone": "Europe/Paris", "weekly": [], "overrides": [{"date": day, "intervals": []}]}
        r = await client.put("/v1/bookings/availability", json=override, headers=h)
        assert r.status_code == 422 and r.json()["code"] == "validation_failed", r.text
    async with Client(build_server(db, static_token=a.token, toolset_names=["bookings"])) as c:
        mcp_refused(await c.call_tool("bookings_slots", far), "from_date")
        for day in EXTREMES:
            held = await c.call_tool(
                "bookings_hold", {"service_id": service_id, "start_at": f"{day}T12:00:00Z"}
            )
            mcp_refused(held, "start_at")
            rescheduled = await c.call_tool(
                "bookings_reschedule", {"booking_id": booking_id, "start_at": f"{day}T12:00:00Z"}
            )
            mcp_refused(rescheduled, "start_at")
