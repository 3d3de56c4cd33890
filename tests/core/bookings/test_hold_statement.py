"""The hold's one placing statement also writes the booking's event (`core.bookings.holds._PLACE`),
and the offer hands schedules back as text parsed once per distinct schedule: what the event
says, who it names when round robin chose, that nothing is written beside a refused hold, that
events emitted earlier keep their order, and that changed hours are seen at once."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from core import bookings
from core.bookings.schemas import HoldIn
from core.errors import Conflict
from core.opener import open_context
from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import (
    admin,
    at,
    day_ahead,
    events,
    hold,
    make_service,
    round_robin_team,
    set_hours,
)


async def _outbox_of(db: Database, person_id: str) -> list[Any]:
    return await admin(
        db,
        "SELECT name, data FROM platform.outbox WHERE person_id = CAST(:p AS uuid) ORDER BY seq",
        {"p": person_id},
    )


async def test_the_held_event_says_what_the_booking_says(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a, price_amount="45.50", currency="eur", buffer_before_minutes=10)
    r = await hold(
        client, a, service_id=svc["id"], start_at=at(day_ahead(4), "10:00"), time_zone="Asia/Tokyo"
    )
    b = r.json()
    [event] = await events(db, "bookings/booking.held", b["id"])
    assert {k: event[k] for k in ("booking_id", "service_id", "provider_id", "client_id", "status")} == {
        "booking_id": b["id"],
        "service_id": svc["id"],
        "provider_id": a.id,
        "client_id": None,
        "status": "held",
    }
    assert event["start_at"] == b["start_at"] and event["end_at"] == b["end_at"]
    assert event["hold_expires_at"] == b["hold_expires_at"]
    assert (event["price_amount"], event["currency"]) == ("45.50", "EUR")
    assert event["context"] == "personal" and event["person_id"] == a.id and event["org_id"] is None
    assert event["tenant_id"] == a.id and event["trace_id"]


async def test_a_client_created_by_the_hold_is_announced_before_the_booking(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a)
    r = await hold(
        client,
        a,
        service_id=svc["id"],
        start_at=at(day_ahead(4), "11:00"),
        client_name="Grace Hopper",
        client_email=f"grace-{uuid.uuid4().hex[:8]}@example.com",
    )
    b = r.json()
    written = [
        (name, data) for name, data in await _outbox_of(db, a.id) if name != "platform/person.signed_up"
    ]
    names = [name for name, _ in written]
    # Queued first, written first: the outbox's order is the order of emission.
    assert names.index("platform/client.created") < names.index("bookings/booking.held"), names
    [held] = [data for name, data in written if name == "bookings/booking.held"]
    assert held["client_id"] == b["client"]["id"] and held["booking_id"] == b["id"]


async def test_round_robin_names_the_provider_it_chose_in_the_event(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner, org, team, svc = await round_robin_team(client, 2)
    first, second = sorted(team, key=lambda p: uuid.UUID(p.id))  # nobody served yet: by id
    other = await make_service(client, owner, org=org, providers=[p.slug for p in team])
    day = day_ahead(8)
    # The first in turn is busy then (on another service): round robin skips them.
    await hold(client, owner, org=org, service_id=other["id"], start_at=at(day, "11:00"), provider=first.slug)
    r = await hold(client, owner, org=org, service_id=svc["id"], start_at=at(day, "11:00"))
    b = r.json()
    assert b["provider"]["id"] == second.id
    [event] = await events(db, "bookings/booking.held", b["id"])
    assert event["provider_id"] == second.id and event["context"] == "org"


async def test_a_refused_hold_writes_no_event_even_when_its_transaction_commits(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner, org, team, svc = await round_robin_team(client, 2)
    start = at(day_ahead(6), "14:00")
    for _ in team:
        await hold(client, owner, org=org, service_id=svc["id"], start_at=start)
    before = await _outbox_of(db, owner.id)
    # Everyone is busy then: the statement inserts nothing and raises no database error (a lone
    # provider's conflict fails the whole transaction instead), so this unit of work commits.
    async with db.uow() as uow:
        ctx = await open_context(uow, owner.token, org)
        with pytest.raises(Conflict) as refused:
            await bookings.hold(ctx, uow, HoldIn.model_validate({"service_id": svc["id"], "start_at": start}))
        assert refused.value.code == "slot_taken"
    assert await _outbox_of(db, owner.id) == before


async def test_changed_hours_apply_to_the_next_hold(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a)
    day = day_ahead(5)
    await hold(client, a, service_id=svc["id"], start_at=at(day, "09:00"))
    # Afternoons only from now on: the morning is refused, the afternoon is not.
    afternoons = [
        {"weekday": d, "start": "13:00", "end": "17:00"}
        for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    ]
    await set_hours(client, a, weekly=afternoons)
    morning = await client.post(
        "/v1/bookings/holds", json={"service_id": svc["id"], "start_at": at(day, "10:00")}, headers=a.h()
    )
    assert morning.status_code == 422 and morning.json()["code"] == "slot_unavailable", morning.text
    await hold(client, a, service_id=svc["id"], start_at=at(day, "14:00"))
    # And a date override, which the same schedule's weekly rules do not show.
    await set_hours(client, a, weekly=afternoons, overrides=[{"date": str(day), "intervals": []}])
    closed = await client.post(
        "/v1/bookings/holds", json={"service_id": svc["id"], "start_at": at(day, "15:00")}, headers=a.h()
    )
    assert closed.status_code == 422 and closed.json()["code"] == "slot_unavailable", closed.text
