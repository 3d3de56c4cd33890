"""The victim's bookings: services and hours in both contexts, confirmed bookings with clients,
a requested booking, a calendar feed. Manage and feed tokens are capabilities, so the attacker
gets only forged ones (wrong key, an access token, garbage) — never the victim's real links."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import jwt

from tests.core.bookings.helpers import hold
from tests.support.world import Victim

ZONE = "Europe/Paris"


def _day(days: int) -> dt.date:
    return dt.datetime.now(ZoneInfo(ZONE)).date() + dt.timedelta(days=days)


def _at(day: dt.date, hour: int) -> str:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=ZoneInfo(ZONE)).isoformat()


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    a, secret = v.person, v.secret
    for org in (None, v.org):
        h = a.h(org=org)
        r = await client.put(
            "/v1/bookings/availability",
            json={
                "time_zone": ZONE,
                "weekly": [
                    {"weekday": d, "start": "08:00", "end": "20:00"}
                    for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                ],
            },
            headers=h,
        )
        assert r.status_code == 200, r.text
        svc = (
            await client.post(
                "/v1/bookings/services",
                json={
                    "name": f"Victim service {secret} {org or 'personal'}",
                    "duration_minutes": 60,
                    "description": f"desc-{secret}",
                    "price_amount": "45.00",
                    "currency": "EUR",
                    "location": f"{secret} street",
                },
                headers=h,
            )
        ).json()
        v.add("service_id", svc["id"])
        # A hold in each context; in the org a long one without a client (the tenancy world's
        # checks count the org's clients exactly), in personal one with a client, then confirmed.
        details: dict[str, Any] = (
            {"start_at": _at(_day(3), 14), "notes": f"org-hold-notes-{secret}", "ttl_seconds": 3600}
            if org is not None
            else {
                "start_at": _at(_day(3), 9),
                "client_name": f"Booked Client {secret}",
                "client_email": f"booked-{secret}@victim.example",
                "client_note": f"client-note-{secret}",
                "notes": f"booking-notes-{secret}",
            }
        )
        held = (await hold(client, a, org=org, service_id=svc["id"], **details)).json()
        v.add("booking_id", held["id"])
        if org is not None:
            continue
        confirmed = (await client.post(f"/v1/bookings/{held['id']}/confirm", json={}, headers=h)).json()
        assert confirmed["status"] == "confirmed", confirmed
        v.markers.add(held["client"]["id"])
        requested = (
            await client.post(
                "/v1/bookings/requests",
                json={
                    "service_id": svc["id"],
                    "start_at": _at(_day(4), 9),
                    "client_id": held["client"]["id"],
                    "client_note": f"request-note-{secret}",
                },
                headers=h,
            )
        ).json()
        v.add("booking_id", requested["id"])
        # The real manage token is a capability: it must never reach another tenant.
        v.markers.add(requested["manage"]["token"])
    feed = (await client.post("/v1/bookings/feeds", json={"name": f"feed {secret}"}, headers=a.h())).json()
    v.add("feed_id", feed["id"])
    v.markers.add(feed["url"].rsplit("/", 1)[1].removesuffix(".ics"))
    forged = jwt.encode(
        {"aud": "atlilith-manage", "iss": "atlilith", "sub": v.refs["booking_id"][0], "exp": 4_000_000_000},
        "not-the-key-" + "y" * 40,
        algorithm="HS256",
    )
    v.refs["token"] = [forged, a.token, "atf_" + uuid.uuid4().hex, "x" * 12]


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for label, h in (("personal", v.person.h()), ("org", v.person.h(org=v.org))):
        state[f"services-{label}"] = (await client.get("/v1/bookings/services", headers=h)).json()
        state[f"hours-{label}"] = (await client.get("/v1/bookings/availability", headers=h)).json()
        bookings = (await client.get("/v1/bookings", headers=h)).json()["items"]
        state[f"bookings-{label}"] = [
            (
                b["id"],
                b["status"],
                b["start_at"],
                b["provider"]["id"],
                (b["client"] or {}).get("id"),
                b["notes"],
            )
            for b in bookings
        ]
    state["feeds"] = [
        (f["id"], f["revoked_at"])
        for f in (await client.get("/v1/bookings/feeds", headers=v.person.h())).json()["items"]
    ]
    return state


def _start(v: Victim) -> str:
    return _at(_day(5), 10)


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/bookings/services"): lambda v: {
        "name": f"M {uuid.uuid4().hex[:6]}",
        "duration_minutes": 30,
    },
    ("PATCH", "/v1/bookings/services/{service_id}"): lambda v: {"name": "pwned", "active": False},
    ("PUT", "/v1/bookings/availability"): lambda v: {"time_zone": "UTC", "weekly": []},
    ("POST", "/v1/bookings/holds"): lambda v: {"service_id": v.refs["service_id"][0], "start_at": _start(v)},
    ("POST", "/v1/bookings/requests"): lambda v: {
        "service_id": v.refs["service_id"][1],
        "start_at": _start(v),
        "client_email": "mallory@example.com",
    },
    ("POST", "/v1/bookings/feeds"): lambda v: {"name": "mallory"},
    ("POST", "/v1/bookings/{booking_id}/confirm"): lambda v: {"notes": "pwned"},
    ("POST", "/v1/bookings/{booking_id}/decline"): lambda v: {"reason": "pwned"},
    ("POST", "/v1/bookings/{booking_id}/cancel"): lambda v: {"reason": "pwned", "by": "client"},
    ("POST", "/v1/bookings/{booking_id}/reschedule"): lambda v: {"start_at": _start(v)},
    ("POST", "/v1/bookings/{booking_id}/outcome"): lambda v: {"outcome": "no_show"},
    ("POST", "/v1/bookings/manage/{token}/cancel"): lambda v: {"reason": "pwned"},
    ("POST", "/v1/bookings/manage/{token}/reschedule"): lambda v: {"start_at": _start(v)},
}

ARGS: dict[str, Any] = {
    "start_at": lambda v: _start(v),
    "from_date": lambda v: str(_day(1)),
    "to_date": lambda v: str(_day(10)),
    "time_zone": lambda v: ZONE,
    "weekly": lambda v: ["mon-sun 00:00-24:00"],
    "reason": lambda v: "pwned",
    "outcome": lambda v: "no_show",
    "provider": lambda v: v.person.slug,
    "duration_minutes": lambda v: 30,
    "by": lambda v: "client",
}
