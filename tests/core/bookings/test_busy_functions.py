"""The two SECURITY DEFINER functions that read and expire a provider's bookings across every
context (bookings_0005): who may call them, and what they answer. They bypass row-level
security by design, so their own permission check (`may_schedule`) is the guarantee."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import text

from core.opener import open_context
from core.uow import Database
from tests.conftest import Account, join_org, make_org, signup
from tests.core.bookings.helpers import admin, at, day_ahead, hold, make_service, set_hours

BUSY = text("SELECT blocked_from, blocked_until FROM bookings.provider_busy(:p, :f, :t, :x)")
EXPIRE = text("SELECT bookings.expire_stale_holds(:p, :f, :t)")


async def _as(
    db: Database, who: Account | None, org: str | None, stmt: Any, values: dict[str, Any]
) -> list[Any]:
    """`stmt` in `who`'s context (in `org`), or in no context at all (None)."""
    async with db.uow() as uow:
        if who is not None:
            await open_context(uow, who.token, org)
        return list((await uow.session.execute(stmt, values)).all())


async def _team(client: httpx.AsyncClient) -> tuple[Account, str, Account, dict[str, Any], dt.date]:
    owner = await signup(client)
    org = await make_org(client, owner)
    provider = await signup(client)
    await join_org(client, org, owner, provider)
    await set_hours(client, owner, org=org, provider=provider.slug)
    svc = await make_service(client, owner, org=org, buffer_after_minutes=15, providers=[provider.slug])
    return owner, org, provider, svc, day_ahead(10)


async def test_busy_time_reaches_those_who_may_schedule_the_provider_only(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner, org, provider, svc, day = await _team(client)
    # The provider's own personal booking and the org's booking: one calendar.
    await set_hours(client, provider)
    personal = await make_service(client, provider)
    await hold(client, provider, service_id=personal["id"], start_at=at(day, "09:00"))
    made = (
        await hold(
            client, owner, org=org, service_id=svc["id"], start_at=at(day, "11:00"), provider=provider.slug
        )
    ).json()
    window = {
        "p": provider.id,
        "f": dt.datetime.fromisoformat(at(day, "00:00")),
        "t": dt.datetime.fromisoformat(at(day, "23:00")),
        "x": None,
    }
    expected = [
        (dt.datetime.fromisoformat(at(day, "09:00")), dt.datetime.fromisoformat(at(day, "10:00"))),
        (dt.datetime.fromisoformat(at(day, "11:00")), dt.datetime.fromisoformat(at(day, "12:15"))),
    ]
    who: Account | None
    for who, context in ((owner, org), (provider, org), (provider, None)):
        assert [tuple(r) for r in await _as(db, who, context, BUSY, window)] == expected
    # A booking being moved does not block its own new time.
    moved = await _as(db, owner, org, BUSY, {**window, "x": made["id"]})
    assert [tuple(r) for r in moved] == expected[:1]

    # Not a member, the owner's personal context, or no context at all: nothing (the last is
    # the NULL answer of the permission check, which must not read as "allowed").
    stranger = await signup(client)
    for who, context in ((stranger, None), (owner, None), (None, None)):
        assert await _as(db, who, context, BUSY, window) == []


async def test_stale_holds_expire_only_for_those_who_may_schedule_the_provider(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner, org, provider, svc, day = await _team(client)
    made = (
        await hold(
            client, owner, org=org, service_id=svc["id"], start_at=at(day, "10:00"), provider=provider.slug
        )
    ).json()
    await admin(
        db,
        "UPDATE bookings.bookings SET hold_expires_at = now() - interval '1 minute' WHERE id = :b",
        {"b": made["id"]},
    )
    window = {
        "p": provider.id,
        "f": dt.datetime.fromisoformat(at(day, "09:30")),
        "t": dt.datetime.fromisoformat(at(day, "10:30")),
    }
    status = "SELECT status FROM bookings.bookings WHERE id = :b"
    # A stale hold blocks nothing, even before it is expired.
    assert await _as(db, owner, org, BUSY, {**window, "x": None}) == []
    stranger = await signup(client)
    for who, context in ((stranger, None), (None, None)):
        assert await _as(db, who, context, EXPIRE, window) == [(0,)]
        assert await admin(db, status, {"b": made["id"]}) == [("held",)]
    # Outside the window: nothing to expire.
    later = {
        **window,
        "f": dt.datetime.fromisoformat(at(day, "11:15")),
        "t": dt.datetime.fromisoformat(at(day, "12:00")),
    }
    assert await _as(db, owner, org, EXPIRE, later) == [(0,)]
    assert await _as(db, owner, org, EXPIRE, window) == [(1,)]
    assert await admin(db, status, {"b": made["id"]}) == [("expired",)]
    assert await _as(db, owner, org, EXPIRE, window) == [(0,)]
