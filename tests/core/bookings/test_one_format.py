"""Shapes the portal found when used as a client: a service's answer (its `price` object) is a
valid request, and working hours take the compact lines and the objects at both doors."""

from __future__ import annotations

import httpx
from mcp import Client

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import signup
from tests.support.mcp import tool_error
from tests.support.registry import install


async def test_a_service_answer_is_a_valid_request(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.post(
        "/v1/bookings/services",
        json={
            "name": "Cut",
            "duration_minutes": 45,
            "price": {"amount": "45.00", "currency": "eur"},
            "late_cancel_fee": {"amount": "10", "currency": "EUR"},
        },
        headers=a.h(),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["price"] == {"amount": "45.00", "currency": "EUR"}
    assert made["late_cancel_fee"] == {"amount": "10.00", "currency": "EUR"}
    # Today's flat form still works.
    flat = await client.post(
        "/v1/bookings/services",
        json={"name": "Colour", "duration_minutes": 60, "price_amount": "80", "currency": "EUR"},
        headers=a.h(),
    )
    assert flat.status_code == 201 and flat.json()["price"] == {"amount": "80.00", "currency": "EUR"}
    # The answer edited and sent back: the price object changes the price, null clears it.
    r = await client.patch(
        f"/v1/bookings/services/{made['id']}",
        json={"price": {"amount": "50", "currency": "EUR"}},
        headers=a.h(),
    )
    assert r.status_code == 200 and r.json()["price"] == {"amount": "50.00", "currency": "EUR"}
    r = await client.patch(f"/v1/bookings/services/{flat.json()['id']}", json={"price": None}, headers=a.h())
    assert r.status_code == 200 and r.json()["price"] is None
    for bad in (
        {"price": {"amount": "5", "currency": "EUR"}, "price_amount": "5"},
        {"price": {"amount": "5", "currency": "EUR"}, "late_cancel_fee": {"amount": "1", "currency": "USD"}},
        {"price": "45 EUR"},
        {"price": {"amount": "5", "currency": "EUR", "tax": "1"}},
    ):
        r = await client.post(
            "/v1/bookings/services", json={"name": "Bad", "duration_minutes": 30, **bad}, headers=a.h()
        )
        assert r.status_code == 422, (bad, r.text)
        if bad == {"price": "45 EUR"}:  # the shape is named, not "unknown field"
            assert r.json()["errors"][0]["message"].startswith("`price` is an object"), r.text


async def test_hours_take_lines_and_objects_at_both_doors(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    r = await client.put(
        "/v1/bookings/availability",
        json={
            "time_zone": "Europe/Paris",
            "weekly": ["mon-fri 09:00-12:00", {"weekday": "sat", "start": "10:00", "end": "13:00"}],
            "overrides": [
                "2026-12-24 off",
                {"date": "2026-12-27", "intervals": [{"start": "10:00", "end": "14:00"}]},
            ],
        },
        headers=a.h(),
    )
    assert r.status_code == 200, r.text
    rest = r.json()
    assert sorted(w["weekday"] for w in rest["weekly"]) == ["fri", "mon", "sat", "thu", "tue", "wed"]
    assert {o["date"]: o["intervals"] for o in rest["overrides"]} == {
        "2026-12-24": [],
        "2026-12-27": [{"start": "10:00", "end": "14:00"}],
    }
    bad = await client.put(
        "/v1/bookings/availability",
        json={"time_zone": "UTC", "weekly": ["someday 09:00-17:00"]},
        headers=a.h(),
    )
    assert bad.status_code == 422 and "someday" in bad.text
    bad = await client.put(
        "/v1/bookings/availability", json={"time_zone": "UTC", "weekly": ["mon 17:00-09:00"]}, headers=a.h()
    )
    assert bad.status_code == 422 and "mon 17:00-09:00" in bad.text

    await install(client, a, "bookings")
    async with Client(build_server(db, static_token=a.token, toolset_names=["bookings"])) as c:
        mcp = await c.call_tool(
            "bookings_availability_set",
            {
                "time_zone": "Europe/Paris",
                "weekly": [
                    {"weekday": "mon", "start": "09:00", "end": "12:00"},
                    "tue-fri 09:00-12:00",
                    "sat 10:00-13:00",
                ],
                "overrides": [
                    {"date": "2026-12-27", "intervals": [{"start": "10:00", "end": "14:00"}]},
                    "2026-12-24 off",
                ],
            },
        )
        assert not mcp.is_error, mcp.content
        got = mcp.structured_content
        assert (
            got["weekly"] == rest["weekly"]
            and sorted(got["overrides"], key=lambda o: o["date"]) == rest["overrides"]
        )
        bad_obj = await c.call_tool(
            "bookings_availability_set", {"time_zone": "UTC", "weekly": [{"weekday": "mon", "start": "9"}]}
        )
        assert bad_obj.is_error and tool_error(bad_obj)["code"] == "invalid_arguments"
