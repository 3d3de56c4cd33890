"""A manage link lives as long as its booking: moved later, the links already sent keep working
until the new end (plus the grace); once the booking is long over, they expire."""

from __future__ import annotations

import datetime as dt
import time

import httpx
import jwt

from core.bookings import links
from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import admin, at, day_ahead, make_service, set_hours

CLIENT = {"client_name": "Grace Hopper", "client_email": "grace@example.com", "time_zone": "Europe/Paris"}


async def test_a_link_follows_its_booking_when_it_moves_later(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a)
    r = await client.post(
        "/v1/bookings/requests",
        json={"service_id": svc["id"], "start_at": at(day_ahead(3), "10:00"), **CLIENT},
        headers=a.h(),
    )
    assert r.status_code == 201, r.text
    booking = r.json()
    token = booking["manage"]["token"]
    later = day_ahead(40)
    moved = await client.post(
        f"/v1/bookings/manage/{token}/reschedule", json={"start_at": at(later, "10:00")}
    )
    assert moved.status_code == 200, moved.text

    # The link first sent, on the day after the old time (its own expiry passed): the booking is
    # still ahead, so the link still reaches it.
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] < dt.datetime.combine(later, dt.time(), dt.UTC).timestamp()
    sent = int(time.time()) - 5 * 86_400
    first = jwt.encode(
        {**claims, "iat": sent, "exp": int(time.time()) - 10}, links._key(db.settings), "HS256"
    )
    view = await client.get(f"/v1/bookings/manage/{first}")
    assert view.status_code == 200, view.text
    assert view.json()["start_at"].startswith(str(later))

    # Long after the booking ended (past the grace), the same link has expired.
    await admin(
        db,
        "UPDATE bookings.bookings SET start_at = now() - interval '3 days',"
        " end_at = now() - interval '3 days' + interval '1 hour' WHERE id = :id",
        {"id": booking["id"]},
    )
    r = await client.get(f"/v1/bookings/manage/{first}")
    assert r.status_code == 410 and r.json()["code"] == "manage_link_expired"
