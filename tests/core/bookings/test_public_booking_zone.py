"""A visitor's zone stays with their booking from the public page, whether it is confirmed at
once or waits for the provider's approval."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from core.bookings import manage_view
from core.bookings.public import PublicBookIn, public_book, public_slots
from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import day_ahead, make_service, set_hours


@pytest.mark.parametrize("approval_required", [True, False])
async def test_a_public_booking_keeps_the_visitors_zone(
    client: httpx.AsyncClient, db: Database, approval_required: bool
) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a, approval_required=approval_required)
    day = day_ahead(5)
    found = await public_slots(db, a.slug, svc["id"], day, 1, "Pacific/Auckland")
    start = found.slots[0].start
    made = await public_book(
        db,
        a.slug,
        PublicBookIn(
            service_id=svc["id"],
            start_at=start,
            name="Kiri Te Kanawa",
            email="kiri@example.com",
            time_zone="Pacific/Auckland",
        ),
    )
    assert made.status == ("requested" if approval_required else "confirmed")

    view = await manage_view(db, made.manage_token)
    assert view.time_zone == "Pacific/Auckland"
    assert view.start_at.utcoffset() in (dt.timedelta(hours=12), dt.timedelta(hours=13))
    r = await client.get(f"/v1/bookings/{made.id}", headers=a.h())
    assert r.status_code == 200, r.text
    assert r.json()["client_time_zone"] == "Pacific/Auckland"
