"""Client manage links reach their booking only and expire; .ics exports; a provider's private
feed covers all their contexts and dies when revoked; reminders go out once."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import icalendar
import jwt

from core.bookings import send_due_reminders
from core.events import load_handlers, run_schedule
from core.uow import Database
from tests.conftest import Account, join_org, make_org, signup
from tests.core.bookings.helpers import admin, at, day_ahead, events, make_service, set_hours

NEW_YORK = ZoneInfo("America/New_York")
CLIENT = {"client_name": "Grace Hopper", "client_email": "grace@example.com", "time_zone": "America/New_York"}


async def _booked(
    client: httpx.AsyncClient, **service: Any
) -> tuple[Account, dict[str, Any], dt.date, list[dict[str, Any]]]:
    a = await signup(client)
    await set_hours(client, a)
    svc = await make_service(client, a, **service)
    day = day_ahead(5)
    made: list[dict[str, Any]] = []
    for hour in ("10:00", "14:00"):
        r = await client.post(
            "/v1/bookings/requests",
            json={"service_id": svc["id"], "start_at": at(day, hour), **CLIENT},
            headers=a.h(),
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    return a, svc, day, made


async def test_a_manage_link_reaches_its_booking_and_nothing_else(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, _svc, day, (one, two) = await _booked(client, cancel_notice_minutes=60)
    token = one["manage"]["token"]
    view = await client.get(f"/v1/bookings/manage/{token}")  # no credential
    assert view.status_code == 200, view.text
    v = view.json()
    assert v["id"] == one["id"] and v["can_cancel"] and v["can_reschedule"]
    # In the client's zone, with New York's offset of that day (-05:00 in winter, -04:00 in summer).
    booked = dt.datetime.fromisoformat(one["start_at"])
    assert v["time_zone"] == "America/New_York" and v["start_at"] == booked.astimezone(NEW_YORK).isoformat()
    assert two["id"] not in view.text and "grace@example.com" not in view.text  # nothing else
    assert (await client.get(f"/v1/bookings/manage/{token}/ics")).text.count("BEGIN:VEVENT") == 1

    # The token is not a credential, and a credential is not a token.
    assert (await client.get("/v1/bookings", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    assert (await client.get(f"/v1/bookings/manage/{a.token}")).json()["code"] == "manage_link_invalid"
    # Re-signed for the other booking with the access-token secret, or with no signature: refused.
    claims = jwt.decode(token, options={"verify_signature": False})
    secret = db.settings.jwt_secret
    assert secret
    for forged in (
        jwt.encode({**claims, "sub": two["id"]}, secret, algorithm="HS256"),
        jwt.encode({**claims, "sub": two["id"]}, "", algorithm="none"),
        token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
    ):
        r = await client.get(f"/v1/bookings/manage/{forged}")
        assert r.status_code == 404 and r.json()["code"] == "manage_link_invalid"
    # Expiry follows the booking: tests/core/bookings/test_manage_link_lifetime.py.

    # The client reschedules: only to free times of the same provider, and the booking keeps its id.
    options = (
        await client.get(
            f"/v1/bookings/manage/{token}/slots", params={"from_date": str(day), "to_date": str(day)}
        )
    ).json()["slots"]
    starts = [s["start"] for s in options]
    assert starts and all(  # in the client's zone
        s == dt.datetime.fromisoformat(s).astimezone(NEW_YORK).isoformat() for s in starts
    )
    taken = await client.post(f"/v1/bookings/manage/{token}/reschedule", json={"start_at": two["start_at"]})
    assert taken.status_code == 409 and taken.json()["code"] == "slot_taken"
    assert two["id"] not in taken.text
    target = at(day, "16:00")
    dry = await client.post(
        f"/v1/bookings/manage/{token}/reschedule", json={"start_at": target, "dry_run": True}
    )
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert (await client.get(f"/v1/bookings/{one['id']}", headers=a.h())).json()["start_at"] == one[
        "start_at"
    ]
    moved = await client.post(f"/v1/bookings/manage/{token}/reschedule", json={"start_at": target})
    assert moved.status_code == 200, moved.text
    after = (await client.get(f"/v1/bookings/{one['id']}", headers=a.h())).json()
    assert after["reschedules"][0]["by"] == "client" and after["id"] == one["id"]
    [event] = await events(db, "bookings/booking.rescheduled", one["id"])
    assert event["by"] == "client" and event["person_id"] == a.id

    # And cancels (well ahead: free), which closes the link for changes.
    gone = await client.post(f"/v1/bookings/manage/{token}/cancel", json={"reason": "found another time"})
    assert gone.status_code == 200 and gone.json()["booking"]["status"] == "cancelled"
    assert gone.json()["fee"] is None
    closed = await client.post(f"/v1/bookings/manage/{token}/reschedule", json={"start_at": target})
    assert closed.status_code == 409 and closed.json()["code"] == "booking_closed"
    no_times = await client.get(
        f"/v1/bookings/manage/{token}/slots", params={"from_date": str(day), "to_date": str(day)}
    )
    assert no_times.status_code == 409 and no_times.json()["code"] == "booking_closed"
    provider_view = (await client.get(f"/v1/bookings/{one['id']}", headers=a.h())).json()
    assert provider_view["cancellation"]["untrusted_reason"] == "found another time"
    assert (await client.get(f"/v1/bookings/{two['id']}", headers=a.h())).json()["status"] == "requested"


async def test_a_client_cancelling_late_is_told_the_fee(client: httpx.AsyncClient, db: Database) -> None:
    _a, _svc, _day, (one, _) = await _booked(
        client, cancel_notice_minutes=10 * 24 * 60, late_cancel_fee="15", price_amount="50", currency="EUR"
    )
    token = one["manage"]["token"]
    view = (await client.get(f"/v1/bookings/manage/{token}")).json()
    assert "15.00 EUR" in view["cancellation_policy"]
    dry = (await client.post(f"/v1/bookings/manage/{token}/cancel", json={"dry_run": True})).json()
    assert dry["fee"] == {"amount": "15.00", "currency": "EUR"} and dry["booking"]["status"] == "requested"
    done = (await client.post(f"/v1/bookings/manage/{token}/cancel", json={})).json()
    assert done["fee"]["amount"] == "15.00" and done["booking"]["status"] == "cancelled"


async def test_booking_ics_and_the_private_feed(client: httpx.AsyncClient, db: Database) -> None:
    owner, pro = await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, pro)
    await set_hours(client, pro)
    await set_hours(client, owner, org=org, provider=pro.slug)
    personal = await make_service(client, pro, name="Private coaching")
    in_org = await make_service(
        client, owner, org=org, name="Salon cut", providers=[pro.slug], location="Salon"
    )
    day = day_ahead(6)
    mine = (
        await client.post(
            "/v1/bookings/requests",
            json={"service_id": personal["id"], "start_at": at(day, "09:00"), **CLIENT},
            headers=pro.h(),
        )
    ).json()
    salon = (
        await client.post(
            "/v1/bookings/requests",
            json={"service_id": in_org["id"], "start_at": at(day, "11:00"), **CLIENT},
            headers=owner.h(org=org),
        )
    ).json()
    one = await client.get(f"/v1/bookings/{salon['id']}/ics", headers=owner.h(org=org))
    assert one.status_code == 200 and one.headers["content-type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(one.text)
    [event] = cal.walk("VEVENT")
    assert str(event["uid"]).startswith(salon["id"]) and str(event["location"]) == "Salon"
    assert event.decoded("dtstart") == dt.datetime.fromisoformat(salon["start_at"])
    assert (
        await client.get(f"/v1/bookings/{salon['id']}/ics", headers=pro.h())
    ).status_code == 404  # personal ctx

    feed = await client.post("/v1/bookings/feeds", json={"name": "Work"}, headers=pro.h())
    assert feed.status_code == 201
    url = feed.json()["url"]
    path = url.split("127.0.0.1:3040", 1)[1] if "127.0.0.1:3040" in url else url[url.index("/v1/") :]
    got = await client.get(path)
    assert got.status_code == 200
    # Calendar apps add cache-busting parameters: the feed takes no query and ignores them.
    assert (await client.get(path, params={"nocache": "1"})).text == got.text
    uids = {str(e["uid"]).split("@")[0] for e in icalendar.Calendar.from_ical(got.text).walk("VEVENT")}
    assert uids == {mine["id"], salon["id"]}  # both contexts, one calendar
    assert (await client.get(path.replace("atf_", "atf_x"))).status_code == 404

    # Leaving the org takes its bookings out of the feed; revoking kills the URL.
    assert (await client.delete(f"/v1/orgs/{org}/members/{pro.slug}", headers=owner.h())).status_code == 204
    uids = {
        str(e["uid"]).split("@")[0]
        for e in icalendar.Calendar.from_ical((await client.get(path)).text).walk("VEVENT")
    }
    assert uids == {mine["id"]}
    feeds = (await client.get("/v1/bookings/feeds", headers=pro.h())).json()["items"]
    assert [f["id"] for f in feeds] == [feed.json()["id"]]
    assert "url" not in feeds[0]  # shown once
    assert (await client.delete(f"/v1/bookings/feeds/{feeds[0]['id']}", headers=owner.h())).status_code == 404
    revoked = await client.delete(f"/v1/bookings/feeds/{feeds[0]['id']}", headers=pro.h())
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert (await client.get(path)).status_code == 404


async def test_reminders_are_emitted_once_per_booking_time(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    await set_hours(
        client,
        a,
        weekly=[
            {"weekday": d, "start": "00:00", "end": "24:00"}
            for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
        ],
        time_zone="UTC",
    )
    svc = await make_service(client, a, duration_minutes=30, slot_interval_minutes=30)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    later = soon + dt.timedelta(days=3)
    ids = {}
    for label, start in (("soon", soon), ("later", later), ("cancelled", soon + dt.timedelta(hours=1))):
        b = (
            await client.post(
                "/v1/bookings/requests",
                json={"service_id": svc["id"], "start_at": start.isoformat(), **CLIENT},
                headers=a.h(),
            )
        ).json()
        await client.post(f"/v1/bookings/{b['id']}/confirm", json={}, headers=a.h())
        ids[label] = b["id"]
    await client.post(f"/v1/bookings/{ids['cancelled']}/cancel", json={}, headers=a.h())
    held = (
        await client.post(
            "/v1/bookings/holds",
            json={"service_id": svc["id"], "start_at": (soon + dt.timedelta(hours=2)).isoformat()},
            headers=a.h(),
        )
    ).json()

    async def sweep() -> int:
        async with db.system() as uow:
            return await send_due_reminders(uow, dt.timedelta(hours=24))

    counts = await asyncio.gather(*(sweep() for _ in range(4)))  # concurrent sweeps
    assert sum(counts) >= 1
    [reminder] = await events(db, "bookings/booking.reminder_due", ids["soon"])
    assert reminder["provider_id"] == a.id and reminder["client_id"] and reminder["person_id"] == a.id
    assert (
        reminder["start_at"] == soon.isoformat().replace("+00:00", "Z") and reminder["lead_minutes"] == 1440
    )
    for other in (ids["later"], ids["cancelled"], held["id"]):
        assert await events(db, "bookings/booking.reminder_due", other) == []
    await sweep()
    assert len(await events(db, "bookings/booking.reminder_due", ids["soon"])) == 1

    # A reschedule is a new time: it gets its own reminder when that time comes near.
    moved = soon + dt.timedelta(hours=5)
    await client.post(
        f"/v1/bookings/{ids['soon']}/reschedule", json={"start_at": moved.isoformat()}, headers=a.h()
    )
    await sweep()
    evs = await events(db, "bookings/booking.reminder_due", ids["soon"])
    assert [e["start_at"] for e in evs] == [reminder["start_at"], moved.isoformat().replace("+00:00", "Z")]
    rows = await admin(
        db, "SELECT reminder_sent_at IS NOT NULL FROM bookings.bookings WHERE id = :b", {"b": ids["soon"]}
    )
    assert rows[0][0] is True

    # The scheduled handlers are registered and run (once per fire time across processes).
    registry = load_handlers()
    fire_at = dt.datetime(2001, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=uuid.uuid4().int % 10**6)
    for name in ("bookings.reminders", "bookings.expire_holds"):
        ran = await asyncio.gather(*(run_schedule(db, registry.schedules[name], fire_at) for _ in range(2)))
        assert sorted(ran) == [False, True], name
    assert len(await events(db, "bookings/booking.reminder_due", ids["soon"])) == 2


async def test_a_client_moves_only_to_a_time_their_page_offers(client: httpx.AsyncClient) -> None:
    a, svc, day, (one, _two) = await _booked(client)
    token = one["manage"]["token"]
    options = (
        await client.get(
            f"/v1/bookings/manage/{token}/slots", params={"from_date": str(day), "to_date": str(day)}
        )
    ).json()["slots"]
    starts = {dt.datetime.fromisoformat(s["start"]) for s in options}
    # Its own time does not block its move, but is no move: not offered.
    assert dt.datetime.fromisoformat(at(day, "16:00")) in starts
    assert dt.datetime.fromisoformat(one["start_at"]) not in starts
    for dry_run in (True, False):
        off_grid = await client.post(
            f"/v1/bookings/manage/{token}/reschedule", json={"start_at": at(day, "15:07"), "dry_run": dry_run}
        )
        assert off_grid.status_code == 422 and off_grid.json()["code"] == "slot_unavailable", off_grid.text
        assert off_grid.json()["errors"][0]["code"] == "not_offered"
        # Nor to the time it already has: nothing would move, so nothing may say it did.
        same = await client.post(
            f"/v1/bookings/manage/{token}/reschedule", json={"start_at": one["start_at"], "dry_run": dry_run}
        )
        assert same.status_code == 422 and same.json()["errors"][0]["code"] == "current_time", same.text
    assert (await client.get(f"/v1/bookings/{one['id']}", headers=a.h())).json()["start_at"] == one[
        "start_at"
    ]
    # The provider still places a booking anywhere in the hours, and moves one there.
    r = await client.post(
        "/v1/bookings/requests",
        json={"service_id": svc["id"], "start_at": at(day, "12:07"), **CLIENT},
        headers=a.h(),
    )
    assert r.status_code == 201, r.text
    moved = await client.post(
        f"/v1/bookings/{one['id']}/reschedule", json={"start_at": at(day, "15:07")}, headers=a.h()
    )
    assert moved.status_code == 200, moved.text
