"""A reminder to a client whose zone is unknown is written on the provider's clock (their working
hours' zone), and reminders to one client share one conversation however close together they
go out."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from core.bookings.reminders import deliver_reminder
from core.uow import Database
from tests.conftest import Account, signup
from tests.core.bookings.helpers import admin, make_service

PARIS = ZoneInfo("Europe/Paris")


async def _confirmed_due(
    client: httpx.AsyncClient, who: Account, starts: list[dt.datetime], **person: Any
) -> list[str]:
    """Confirmed bookings of one client at `starts`, their reminders fallen due."""
    r = await client.put(
        "/v1/bookings/availability",
        json={"time_zone": "Europe/Paris", "weekly": ["mon-sun 00:00-24:00"]},
        headers=who.h(),
    )
    assert r.status_code == 200, r.text
    svc = await make_service(client, who)
    ids = []
    for start in starts:
        b = await client.post(
            "/v1/bookings/requests",
            json={"service_id": svc["id"], "start_at": start.isoformat(), **person},
            headers=who.h(),
        )
        assert b.status_code == 201, b.text
        ok = await client.post(f"/v1/bookings/{b.json()['id']}/confirm", json={}, headers=who.h())
        assert ok.status_code == 200, ok.text
        ids.append(str(b.json()["id"]))
    return ids


def _soon(hours: int) -> dt.datetime:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)


async def _falls_due(db: Database, booking_ids: list[str]) -> None:
    await admin(
        db,
        "UPDATE bookings.bookings SET reminder_sent_at = now() WHERE id = ANY(CAST(:ids AS uuid[]))",
        {"ids": booking_ids},
    )


async def _portal_threads(client: httpx.AsyncClient, who: Account) -> list[dict[str, Any]]:
    r = await client.get("/v1/messaging/threads", params={"channel": "portal"}, headers=who.h())
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_a_client_without_a_zone_is_reminded_on_the_providers_clock(
    mc: httpx.AsyncClient, mdb: Database
) -> None:
    owner = await signup(mc)
    start = _soon(5)
    [booking_id] = await _confirmed_due(
        mc, owner, [start], client_name="Ada", client_email=f"{uuid.uuid4().hex[:8]}@example.com"
    )
    await _falls_due(mdb, [booking_id])
    async with mdb.system() as uow:
        await deliver_reminder(uow, uuid.UUID(booking_id))

    [thread] = await _portal_threads(mc, owner)
    detail = (await mc.get(f"/v1/messaging/threads/{thread['id']}", headers=owner.h())).json()
    [message] = detail["messages"]
    paris = start.astimezone(PARIS)
    assert f" at {paris:%H:%M} (Europe/Paris time)." in message["body"], message["body"]
    assert not re.search(r"\d{2}:\d{2} UTC", message["body"])


async def test_two_reminders_at_once_for_one_client_share_one_thread(
    mc: httpx.AsyncClient, mdb: Database
) -> None:
    owner = await signup(mc)
    person = {"client_name": "Bo", "client_email": f"{uuid.uuid4().hex[:8]}@example.com"}
    first, second = await _confirmed_due(mc, owner, [_soon(5), _soon(7)], **person)
    await _falls_due(mdb, [first, second])

    # The first reminder is written but not yet committed when the second one runs: the second
    # must not decide "no thread yet" on what it cannot see.
    async with mdb.system() as uow:
        await deliver_reminder(uow, uuid.UUID(first))
        other = asyncio.create_task(_deliver_apart(mdb, second))
        await _waiting_or_done(mdb, other)
    await other

    [thread] = await _portal_threads(mc, owner)
    detail = (await mc.get(f"/v1/messaging/threads/{thread['id']}", headers=owner.h())).json()
    assert len(detail["messages"]) == 2


async def _deliver_apart(db: Database, booking_id: str) -> None:
    async with db.system() as uow:
        await deliver_reminder(uow, uuid.UUID(booking_id))


async def _waiting_or_done(db: Database, task: asyncio.Task[None]) -> None:
    """Until `task` has finished, or waits on a lock in this database (a condition, not a clock)."""
    while not task.done():
        rows = await admin(
            db,
            "SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
            " WHERE NOT l.granted AND l.locktype = 'advisory' AND d.datname = current_database()",
        )
        if rows:
            return
        await asyncio.sleep(0.02)
