"""A list's cursor pages on the list it came from: passed back under other filters (another
status, another search), it is refused as `invalid_cursor` rather than read as a position in a
list the caller is no longer reading, which would silently skip rows."""

from __future__ import annotations

import datetime as dt

import httpx

from tests.conftest import Account, make_org, signup
from tests.core.bookings.helpers import at, day_ahead, make_service, set_hours


async def _three_holds(client: httpx.AsyncClient, a: Account, day: dt.date) -> None:
    await set_hours(client, a)
    svc = await make_service(client, a)
    for hour in ("09:00", "10:00", "11:00"):
        r = await client.post(
            "/v1/bookings/holds", json={"service_id": svc["id"], "start_at": at(day, hour)}, headers=a.h()
        )
        assert r.status_code == 201, r.text


async def test_a_cursor_is_refused_under_other_filters(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    for name in ("Ann One", "Ann Two", "Ann Three", "Bo"):
        r = await client.post("/v1/clients", json={"name": name}, headers=a.h())
        assert r.status_code == 201, r.text
    first = (await client.get("/v1/clients", params={"q": "ann", "limit": 1}, headers=a.h())).json()
    cursor = first["next_cursor"]
    assert cursor
    same = await client.get("/v1/clients", params={"q": "ann", "limit": 5, "cursor": cursor}, headers=a.h())
    assert same.status_code == 200 and len(same.json()["items"]) == 2
    for other in ({}, {"q": "bo"}):
        r = await client.get("/v1/clients", params={**other, "cursor": cursor}, headers=a.h())
        assert r.status_code == 422, r.text
        assert r.json()["code"] == "invalid_cursor" and "same filters" in r.json()["hint"]

    await _three_holds(client, a, day_ahead(3))
    held = (await client.get("/v1/bookings", params={"status": "held", "limit": 1}, headers=a.h())).json()
    assert held["next_cursor"]
    r = await client.get("/v1/bookings", params={"cursor": held["next_cursor"]}, headers=a.h())
    assert r.status_code == 422 and r.json()["code"] == "invalid_cursor"
    r = await client.get(
        "/v1/bookings", params={"status": "held", "cursor": held["next_cursor"], "limit": 5}, headers=a.h()
    )
    assert r.status_code == 200 and len(r.json()["items"]) == 2


async def test_the_same_filters_written_otherwise_keep_the_cursor(client: httpx.AsyncClient) -> None:
    """Filters are compared as what they select: several statuses in another order, or no
    filter written as an empty value, page on with the same cursor."""
    a = await signup(client)
    await _three_holds(client, a, day_ahead(4))
    first = await client.get("/v1/bookings?status=held&status=confirmed&limit=1", headers=a.h())
    cursor = first.json()["next_cursor"]
    again = await client.get(
        "/v1/bookings",
        params=[("status", "confirmed"), ("status", "held"), ("cursor", cursor)],
        headers=a.h(),
    )
    assert again.status_code == 200 and len(again.json()["items"]) == 2, again.text
    for name in ("Ann", "Bo"):
        await client.post("/v1/clients", json={"name": name}, headers=a.h())
    plain = (await client.get("/v1/clients", params={"limit": 1}, headers=a.h())).json()["next_cursor"]
    empty_q = await client.get("/v1/clients", params={"q": "", "cursor": plain}, headers=a.h())
    assert empty_q.status_code == 200 and len(empty_q.json()["items"]) == 1, empty_q.text


async def test_a_cursor_is_refused_in_another_context(client: httpx.AsyncClient) -> None:
    """A personal list's cursor passed to the same list of an org: it was read as a position
    there, silently skipping the org's rows up to it."""
    a = await signup(client)
    org = await make_org(client, a)
    for name in ("Ann", "Bo"):
        assert (await client.post("/v1/clients", json={"name": name}, headers=a.h())).status_code == 201
        assert (
            await client.post("/v1/clients", json={"name": name}, headers=a.h(org=org))
        ).status_code == 201
    cursor = (await client.get("/v1/clients", params={"limit": 1}, headers=a.h())).json()["next_cursor"]
    mine = await client.get("/v1/clients", params={"cursor": cursor}, headers=a.h())
    assert mine.status_code == 200 and len(mine.json()["items"]) == 1
    elsewhere = await client.get("/v1/clients", params={"cursor": cursor}, headers=a.h(org=org))
    assert elsewhere.status_code == 422 and elsewhere.json()["code"] == "invalid_cursor"
    assert "same context" in elsewhere.json()["hint"]
