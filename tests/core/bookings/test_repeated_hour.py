"""The hour a fall-back change repeats, through the database and every door: slots offer both
readings of 01:00 in Los Angeles, a client books the second, moves to the first, and the
provider holds the second again."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import httpx

from core.bookings import manage_reschedule, manage_slots
from core.bookings.public import PublicBookIn, public_book
from core.bookings.schemas import ManageRescheduleIn
from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import ALL_DAY, hold, make_service, next_fall_back, set_hours, slots

LOS_ANGELES = "America/Los_Angeles"
LOS_ANGELES_ZONE = ZoneInfo(LOS_ANGELES)


async def test_both_readings_of_the_repeated_hour_are_offered_booked_and_moved_to(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    await set_hours(client, a, time_zone=LOS_ANGELES, weekly=ALL_DAY)
    svc = await make_service(client, a, max_advance_days=730)
    day = next_fall_back(LOS_ANGELES_ZONE)
    first, second = f"{day}T01:00:00-07:00", f"{day}T01:00:00-08:00"

    found = [s["start"] for s in await slots(client, a, svc["id"], day, day, time_zone=LOS_ANGELES)]
    assert len(found) == 25
    assert found[1:3] == [first, second]

    # The client's doors accept only what the search offers: the second 01:00 is one of them.
    made = await public_book(
        db,
        a.slug,
        PublicBookIn(
            service_id=uuid.UUID(svc["id"]),
            start_at=dt.datetime.fromisoformat(second),
            name="Grace Hopper",
            email="grace@example.com",
            time_zone=LOS_ANGELES,
        ),
    )
    assert made.start_at.astimezone(LOS_ANGELES_ZONE).isoformat() == second
    movable = await manage_slots(db, made.manage_token, day, day, LOS_ANGELES)
    assert [s.start.isoformat() for s in movable.slots][:3] == [
        f"{day}T00:00:00-07:00",
        first,
        f"{day}T02:00:00-08:00",
    ]
    moved = await manage_reschedule(
        db, made.manage_token, ManageRescheduleIn(start_at=dt.datetime.fromisoformat(first))
    )
    # As text: Python never finds a time of the repeated hour equal to one of another zone.
    assert moved.booking.start_at.isoformat() == first

    # The second 01:00 is free again, and the provider's hold takes it.
    held = (await hold(client, a, service_id=svc["id"], start_at=second)).json()
    assert dt.datetime.fromisoformat(held["start_at"]).astimezone(LOS_ANGELES_ZONE).isoformat() == second
