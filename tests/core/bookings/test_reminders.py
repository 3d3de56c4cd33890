"""Reminders arrive: a due reminder becomes one message to the client — by email through the
mail peer when the context has one (retried when the peer fails), else in the client's portal
conversation — carrying the manage link, and its delivery state shows on the booking."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from core.bookings import send_due_reminders
from core.relay import Relay
from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import admin, make_service
from tests.support.messaging import FakePeer
from tests.support.relay import drain_until

CLIENT = {"client_name": "Ada", "client_email": "ada@example.com", "time_zone": "Asia/Tokyo"}


@pytest.fixture(autouse=True)
async def _no_reminder_due_yet(mdb: Database) -> None:
    """The sweep reaches every tenant, and modules that ran before on this worker may have left
    confirmed bookings due within the day: mark them reminded, so each sweep here counts only
    the bookings its test made."""
    await admin(
        mdb,
        "UPDATE bookings.bookings SET reminder_sent_at = now()"
        " WHERE status = 'confirmed' AND reminder_sent_at IS NULL",
    )


async def _booked_soon(mc: httpx.AsyncClient, h: dict[str, str], who: Any, hours: int = 3) -> str:
    r = await mc.put(
        "/v1/bookings/availability", json={"time_zone": "UTC", "weekly": ["mon-sun 00:00-24:00"]}, headers=h
    )
    assert r.status_code == 200, r.text
    svc = await make_service(mc, who)
    start = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
    b = await mc.post(
        "/v1/bookings/requests",
        json={"service_id": svc["id"], "start_at": start.isoformat(), **CLIENT},
        headers=h,
    )
    assert b.status_code == 201, b.text
    confirmed = await mc.post(f"/v1/bookings/{b.json()['id']}/confirm", json={}, headers=h)
    assert confirmed.status_code == 200, confirmed.text
    return str(b.json()["id"])


async def _reminder(mc: httpx.AsyncClient, h: dict[str, str], booking_id: str) -> dict[str, Any] | None:
    r = await mc.get(f"/v1/bookings/{booking_id}", headers=h)
    return r.json()["reminder"]  # type: ignore[no-any-return]


def _reminder_is(
    mc: httpx.AsyncClient, h: dict[str, str], booking_id: str, status: str
) -> Callable[[], Awaitable[bool]]:
    """A check for drain_until: the booking's reminder has reached `status`."""

    async def check() -> bool:
        reminder = await _reminder(mc, h, booking_id)
        return reminder is not None and reminder["status"] == status

    return check


async def test_without_a_mail_peer_the_reminder_lands_in_the_portal_conversation(
    mc: httpx.AsyncClient, mdb: Database
) -> None:
    owner = await signup(mc)
    h = owner.h()
    booking_id = await _booked_soon(mc, h, owner)
    assert await _reminder(mc, h, booking_id) is None
    async with mdb.system() as uow:
        assert await send_due_reminders(uow, dt.timedelta(hours=24)) == 1
    relay = Relay(mdb)

    await drain_until(relay, _reminder_is(mc, h, booking_id, "sent"))
    reminder = await _reminder(mc, h, booking_id)
    assert reminder and reminder["channel"] == "portal" and reminder["message_id"] and reminder["due_at"]
    threads = (await mc.get("/v1/messaging/threads", params={"channel": "portal"}, headers=h)).json()["items"]
    [thread] = threads
    detail = (await mc.get(f"/v1/messaging/threads/{thread['id']}", headers=h)).json()
    [message] = detail["messages"]
    assert message["id"] == reminder["message_id"] and message["delivery_status"] == "sent"
    assert "Reminder:" in message["body"] and "/manage/" in message["body"]
    assert re.search(r" at \d{2}:\d{2} \(Asia/Tokyo time\)\.", message["body"]), message["body"]
    # The platform wrote it, not the provider: the inbox must not say "sent by you".
    assert message["author"]["kind"] == "system"
    # The client reads it through their conversation link, issued by this first message.
    link = (await mc.get(f"/v1/messaging/threads/{thread['id']}/client-link", headers=h)).json()
    assert link["active"]
    page = await mc.get(f"/c/{link['token']}")
    assert page.status_code == 200 and "Reminder:" in page.text

    # Sweeping and draining again sends nothing more: once per booking time.
    async with mdb.system() as uow:
        assert await send_due_reminders(uow, dt.timedelta(hours=24)) == 0
    await relay.drain()
    detail = (await mc.get(f"/v1/messaging/threads/{thread['id']}", headers=h)).json()
    assert len(detail["messages"]) == 1


async def test_with_a_mail_peer_the_reminder_is_emailed_and_a_failure_is_retried_and_shown(
    mc: httpx.AsyncClient, mdb: Database
) -> None:
    owner = await signup(mc)
    h = owner.h()
    failures = {"left": 1}

    def flaky(item: Any) -> tuple[int, Any]:
        if failures["left"] > 0:
            failures["left"] -= 1
            return 503, {"error": "try later"}
        return 200, {"external_id": f"mail-{item.body['message_id']}"}

    async with FakePeer(script=flaky) as peer:
        r = await mc.put(
            "/v1/messaging/settings", json={"channel_peers": {"email": peer.url("/deliver")}}, headers=h
        )
        assert r.status_code == 200, r.text
        booking_id = await _booked_soon(mc, h, owner)
        async with mdb.system() as uow:
            assert await send_due_reminders(uow, dt.timedelta(hours=24)) == 1
        relay = Relay(mdb)

        await drain_until(relay, _reminder_is(mc, h, booking_id, "sent"), timeout=20)
        shown = await _reminder(mc, h, booking_id)
        assert shown and shown["channel"] == "email" and shown["error"] is None
        delivered = [x for x in peer.received if x.body.get("message_id") == shown["message_id"]]
        assert len(delivered) == 2  # one failure, one success: the same message, retried
        assert delivered[-1].body["to"]["email"] == "ada@example.com"
        assert "/manage/" in delivered[-1].body["body"]

        # A peer that refuses the message outright: not retried, and the booking says why.
        failures["left"] = 0
        peer.script = lambda item: (422, {"error": "no such mailbox"})
        refused_id = await _booked_soon(mc, h, owner, hours=6)
        async with mdb.system() as uow:
            assert await send_due_reminders(uow, dt.timedelta(hours=24)) == 1

        await drain_until(relay, _reminder_is(mc, h, refused_id, "failed"))
        refused = await _reminder(mc, h, refused_id)
        assert refused and "422" in (refused["error"] or "")
