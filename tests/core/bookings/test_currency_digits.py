"""Prices are written as their currency is: a yen price is 1500 (never 1500.00) everywhere it is
answered — the service, the booking, the late fee and its policy sentence, the booking's event —
and 1500.50 yen is refused with the field named, keeping what was stored."""

from __future__ import annotations

import httpx

from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import admin, at, day_ahead, events, make_service, set_hours

CLIENT = {"client_name": "Grace Hopper", "client_email": "grace@example.com", "time_zone": "Asia/Tokyo"}


async def test_a_yen_price_has_no_decimals_anywhere(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(
        client,
        a,
        price={"amount": "1500.00", "currency": "JPY"},
        late_cancel_fee={"amount": "500", "currency": "JPY"},
        cancel_notice_minutes=10 * 24 * 60,
    )
    assert svc["price"] == {"amount": "1500", "currency": "JPY"}
    assert svc["late_cancel_fee"] == {"amount": "500", "currency": "JPY"}
    r = await client.post(
        "/v1/bookings/requests",
        json={"service_id": svc["id"], "start_at": at(day_ahead(5), "10:00"), **CLIENT},
        headers=a.h(),
    )
    assert r.status_code == 201, r.text
    booking = r.json()
    assert booking["price"] == {"amount": "1500", "currency": "JPY"}
    [requested] = await events(db, "bookings/booking.requested", booking["id"])
    assert (requested["price_amount"], requested["currency"]) == ("1500", "JPY")
    token = booking["manage"]["token"]
    view = (await client.get(f"/v1/bookings/manage/{token}")).json()
    assert view["cancellation_policy"].endswith("later cancellations cost 500 JPY")
    dry = (await client.post(f"/v1/bookings/manage/{token}/cancel", json={"dry_run": True})).json()
    assert dry["fee"] == {"amount": "500", "currency": "JPY"}


async def test_decimals_a_currency_does_not_have_are_refused(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.post(
        "/v1/bookings/services",
        json={"name": "Cut", "duration_minutes": 30, "price_amount": "1500.50", "currency": "jpy"},
        headers=a.h(),
    )
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed" and "JPY amounts are whole numbers" in problem["detail"]
    assert problem["errors"] == [
        {"field": "price_amount", "message": "JPY amounts are whole numbers", "code": "amount_precision"}
    ]
    assert problem["hint"] == "write price_amount as JPY prices are written: 1501, not 1500.50"
    # Switching a cents price to yen would store 35.50 yen: refused, the price kept as it was.
    euros = await make_service(client, a, price={"amount": "35.50", "currency": "EUR"})
    r = await client.patch(f"/v1/bookings/services/{euros['id']}", json={"currency": "JPY"}, headers=a.h())
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["price_amount"]
    kept = await client.get(f"/v1/bookings/services/{euros['id']}", headers=a.h())
    assert kept.json()["price"] == {"amount": "35.50", "currency": "EUR"}
    r = await client.patch(
        f"/v1/bookings/services/{euros['id']}",
        json={
            "price": {"amount": "3500", "currency": "JPY"},
            "late_cancel_fee": {"amount": "2.5", "currency": "JPY"},
        },
        headers=a.h(),
    )
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["late_cancel_fee"]
    r = await client.patch(
        f"/v1/bookings/services/{euros['id']}",
        json={"price": {"amount": "3500", "currency": "JPY"}},
        headers=a.h(),
    )
    assert r.status_code == 200 and r.json()["price"] == {"amount": "3500", "currency": "JPY"}
    # A three-decimal currency is answered with its three decimals.
    dinars = await make_service(client, a, price={"amount": "1.25", "currency": "KWD"})
    assert dinars["price"] == {"amount": "1.250", "currency": "KWD"}


async def test_a_fee_without_a_price_says_it_needs_one(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.post(
        "/v1/bookings/services",
        json={
            "name": "Free chat",
            "duration_minutes": 30,
            "late_cancel_fee": {"amount": "10", "currency": "EUR"},
        },
        headers=a.h(),
    )
    assert r.status_code == 422, r.text
    assert [e["message"] for e in r.json()["errors"]] == [
        "a `late_cancel_fee` needs a price, in the same currency"
    ]


async def test_an_amount_stored_before_the_check_is_answered_as_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Nothing is rounded away on the way out: 1500.50 yen written before digits were checked
    is answered as 1500.50, not as a price of 1500 nobody agreed to."""
    a = await signup(client)
    svc = await make_service(client, a, price={"amount": "1500", "currency": "JPY"})
    await admin(db, "UPDATE bookings.services SET price_amount = 1500.50 WHERE id = :id", {"id": svc["id"]})
    shown = (await client.get(f"/v1/bookings/services/{svc['id']}", headers=a.h())).json()
    assert shown["price"] == {"amount": "1500.50", "currency": "JPY"}
    # An edit that leaves the price alone is not refused for it; one that sets it is.
    r = await client.patch(f"/v1/bookings/services/{svc['id']}", json={"active": False}, headers=a.h())
    assert r.status_code == 200 and r.json()["active"] is False, r.text
    r = await client.patch(f"/v1/bookings/services/{svc['id']}", json={"price_amount": "0.50"}, headers=a.h())
    assert r.status_code == 422 and r.json()["hint"].endswith(": 1, not 0.50"), r.text
