"""Slot searches through REST and the database, checked slot for slot against the reference
(`reference.py`, one datetime at a time): what the grid's own property tests cannot see -- the
busy time the offer statement reads at the window's edges, a booking across midnight, a DST day
in the provider's zone with the requester in another, and the notice and horizon limits against
the server's clock."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from core.bookings.availability import Hours, Rules
from core.bookings.schemas import WeeklyHours
from core.utilities import utcnow
from tests.conftest import Account, signup
from tests.core.bookings.helpers import at, day_ahead, make_service, set_hours, slots
from tests.core.bookings.reference import reference_starts

UTC = dt.UTC
PARIS, NEW_YORK = ZoneInfo("Europe/Paris"), ZoneInfo("America/New_York")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLIENT = {"client_name": "Ada Lovelace", "client_email": "ada@example.com"}


def _weekly(*ranges: tuple[str, str]) -> list[dict[str, str]]:
    return [{"weekday": d, "start": a, "end": b} for d in DAYS for a, b in ranges]


def _hours(weekly: list[dict[str, str]], zone: ZoneInfo = PARIS) -> Hours:
    return Hours(zone, [WeeklyHours.model_validate(w) for w in weekly])


def _rules(svc: dict[str, Any], now: dt.datetime) -> Rules:
    return Rules(
        duration=dt.timedelta(minutes=svc["duration_minutes"]),
        step=dt.timedelta(minutes=svc["slot_interval_minutes"] or svc["duration_minutes"]),
        buffer_before=dt.timedelta(minutes=svc["buffer_before_minutes"]),
        buffer_after=dt.timedelta(minutes=svc["buffer_after_minutes"]),
        earliest=now + dt.timedelta(minutes=svc["min_notice_minutes"]),
        latest=now + dt.timedelta(days=svc["max_advance_days"]),
    )


def _span(first: dt.date, last: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(first, dt.time(), tzinfo=zone).astimezone(UTC)
    return start, dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=zone).astimezone(UTC)


async def _book(
    client: httpx.AsyncClient, who: Account, svc: dict[str, Any], start: str
) -> tuple[dt.datetime, dt.datetime]:
    """A requested booking (it blocks its time and never expires); its blocked range."""
    r = await client.post(
        "/v1/bookings/requests", json={"service_id": svc["id"], "start_at": start, **CLIENT}, headers=who.h()
    )
    assert r.status_code == 201, r.text
    b = r.json()
    before, after = (dt.timedelta(minutes=svc[f"buffer_{side}_minutes"]) for side in ("before", "after"))
    return dt.datetime.fromisoformat(b["start_at"]) - before, dt.datetime.fromisoformat(b["end_at"]) + after


async def _search(
    client: httpx.AsyncClient,
    who: Account,
    svc: dict[str, Any],
    first: dt.date,
    last: dt.date,
    zone: ZoneInfo,
) -> tuple[list[dict[str, Any]], dt.datetime, dt.datetime]:
    """The REST answer, and the server's clock bracketed: read before and after the request."""
    before = utcnow()
    found = await slots(client, who, svc["id"], first, last, time_zone=zone.key)
    return found, before, utcnow()


def _expected(
    hours: Hours,
    svc: dict[str, Any],
    busy: list[tuple[dt.datetime, dt.datetime]],
    first: dt.date,
    last: dt.date,
    zone: ZoneInfo,
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The reference's answer as the API writes it: start and end on the requester's clock."""
    length = dt.timedelta(minutes=svc["duration_minutes"])
    return [
        {"start": s.astimezone(zone).isoformat(), "end": (s + length).astimezone(zone).isoformat()}
        for s in reference_starts(hours, _rules(svc, now), busy, *_span(first, last, zone))
    ]


def _times(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"start": s["start"], "end": s["end"]} for s in found]


async def test_a_booking_across_midnight_blocks_both_days_and_the_next_days_first_slots(
    client: httpx.AsyncClient,
) -> None:
    a = await signup(client)
    weekly = _weekly(("00:00", "24:00"))
    # No working window holds a booking across its own zone's midnight, so the booking is made
    # while the provider works on Tokyo's clock (07:00-09:00 there), then they move to Paris.
    await set_hours(client, a, weekly=weekly, time_zone="Asia/Tokyo")
    svc = await make_service(
        client,
        a,
        duration_minutes=30,
        slot_interval_minutes=15,
        buffer_before_minutes=15,
        buffer_after_minutes=10,
    )
    long = await make_service(client, a, duration_minutes=120)
    day = day_ahead(10)
    busy = [await _book(client, a, long, at(day, "23:00"))]  # 23:00 -> 01:00, Paris
    await set_hours(client, a, weekly=weekly)
    hours = _hours(weekly)

    # The next day's search starts inside the booking: the offer must read busy time from before
    # its window (the booking began the day before; the slot's buffer reaches further back).
    after, t0, _ = await _search(
        client, a, svc, day + dt.timedelta(days=1), day + dt.timedelta(days=1), PARIS
    )
    assert after[0]["start"] == at(day + dt.timedelta(days=1), "01:15")  # 01:00 + 15 min before
    assert _times(after) == _expected(
        hours, svc, busy, day + dt.timedelta(days=1), day + dt.timedelta(days=1), PARIS, t0
    )
    # The day of: its last slot ends with its 10-minute buffer by 23:00.
    same, t0, _ = await _search(client, a, svc, day, day, PARIS)
    assert same[-1]["start"] == at(day, "22:15")
    assert _times(same) == _expected(hours, svc, busy, day, day, PARIS, t0)
    # Both days on a New York clock: one search across the booking, the answer on that clock.
    both, t0, _ = await _search(client, a, svc, day, day + dt.timedelta(days=1), NEW_YORK)
    assert _times(both) == _expected(hours, svc, busy, day, day + dt.timedelta(days=1), NEW_YORK, t0)
    assert all(s["providers"] == [a.slug] for s in both)
    blocked_from, blocked_until = busy[0]
    for s in both:
        start = dt.datetime.fromisoformat(s["start"])
        assert not (
            start - dt.timedelta(minutes=15) < blocked_until
            and blocked_from < start + dt.timedelta(minutes=40)
        )


def _next_change(zone: ZoneInfo, after: dt.date) -> dt.date:
    """The first date after `after` on which `zone`'s offset changes (computed, never a literal)."""
    day = after
    while True:
        noon = dt.datetime.combine(day, dt.time(12), tzinfo=zone).utcoffset()
        if noon != dt.datetime.combine(day + dt.timedelta(days=1), dt.time(12), tzinfo=zone).utcoffset():
            return day + dt.timedelta(days=1)
        day += dt.timedelta(days=1)


async def test_a_dst_day_in_the_providers_zone_keeps_local_hours_for_a_requester_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    a = await signup(client)
    # The small hours hold the change itself (02:00-03:00 skipped in spring, repeated in autumn).
    weekly = _weekly(("00:00", "06:00"), ("09:00", "17:00"))
    await set_hours(client, a, weekly=weekly)
    # A 45-minute step walks the Paris clock to other instants than 45-minute steps of UTC would
    # across either change (an hourly step would land on the same ones).
    svc = await make_service(client, a, duration_minutes=60, slot_interval_minutes=45, max_advance_days=730)
    change = _next_change(PARIS, day_ahead(2))
    busy = [await _book(client, a, svc, at(change, "10:00"))]
    first, last = change - dt.timedelta(days=1), change + dt.timedelta(days=1)
    found, t0, _ = await _search(client, a, svc, first, last, NEW_YORK)
    assert _times(found) == _expected(_hours(weekly), svc, busy, first, last, NEW_YORK, t0)
    # On the day itself the working hours stay 09:00-17:00 on the Paris clock.
    local = {
        dt.datetime.fromisoformat(s["start"]).astimezone(PARIS).strftime("%H:%M")
        for s in found
        if dt.datetime.fromisoformat(s["start"]).astimezone(PARIS).date() == change
    }
    assert {"09:00", "11:15", "15:45"} <= local  # the booking (10:00-11:00) takes 09:45 and 10:30
    assert not {"09:45", "10:30", "16:30"} & local


async def test_notice_and_horizon_cut_the_answer_at_the_servers_clock(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    weekly = _weekly(("00:00", "24:00"))
    await set_hours(client, a, weekly=weekly)
    # An odd notice puts the earliest start between two grid points.
    svc = await make_service(
        client,
        a,
        duration_minutes=30,
        slot_interval_minutes=30,
        min_notice_minutes=24 * 60 + 7,
        max_advance_days=3,
    )
    today = dt.datetime.now(PARIS).date()
    first, last = today - dt.timedelta(days=1), today + dt.timedelta(days=4)
    found, t0, t1 = await _search(client, a, svc, first, last, PARIS)
    starts = [dt.datetime.fromisoformat(s["start"]) for s in found]
    notice, horizon = dt.timedelta(minutes=24 * 60 + 7), dt.timedelta(days=3)
    assert starts and t0 + notice <= starts[0] < t1 + notice + dt.timedelta(minutes=30)
    assert t0 + horizon - dt.timedelta(minutes=30) < starts[-1] <= t1 + horizon
    # The server read its clock between t0 and t1: the answer lies between the reference's at
    # either end (equal to both unless a grid point fell in between).
    early, late = (_expected(_hours(weekly), svc, [], first, last, PARIS, now) for now in (t0, t1))
    got = _times(found)
    assert [s for s in early if s in late] == [s for s in got if s in early and s in late]
    assert all(s in early or s in late for s in got)


async def test_a_booking_may_move_next_to_itself_but_not_onto_itself(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    weekly = _weekly(("09:00", "17:00"))
    await set_hours(client, a, weekly=weekly)
    svc = await make_service(client, a, duration_minutes=45, buffer_after_minutes=15)
    day = day_ahead(6)
    made = []
    for start in (at(day, "10:30"), at(day, "14:00")):
        r = await client.post(
            "/v1/bookings/requests",
            json={"service_id": svc["id"], "start_at": start, **CLIENT},
            headers=a.h(),
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    moving, other = made
    path = f"/v1/bookings/{moving['id']}/slots"
    before = utcnow()
    r = await client.get(
        path, params={"from_date": str(day), "to_date": str(day), "time_zone": "Europe/Paris"}, headers=a.h()
    )
    assert r.status_code == 200, r.text
    # The reference, with only the other booking busy, less the booking's own time.
    busy = [
        (
            dt.datetime.fromisoformat(other["start_at"]),
            dt.datetime.fromisoformat(other["end_at"]) + dt.timedelta(minutes=15),
        )
    ]
    own = dt.datetime.fromisoformat(moving["start_at"])
    want = [
        s
        for s in _expected(_hours(weekly), svc, busy, day, day, PARIS, before)
        if dt.datetime.fromisoformat(s["start"]) != own
    ]
    assert _times(r.json()["slots"]) == want
    times = {s["start"] for s in r.json()["slots"]}
    searched = {s["start"] for s in await slots(client, a, svc["id"], day, day, time_zone="Europe/Paris")}
    assert at(day, "09:45") in times and at(day, "09:45") not in searched  # blocked only by itself
    assert at(day, "10:30") not in times
    moved = await client.post(
        f"/v1/bookings/{moving['id']}/reschedule", json={"start_at": at(day, "09:45")}, headers=a.h()
    )
    assert moved.status_code == 200, moved.text

    stranger = await signup(client)
    hidden = await client.get(path, params={"from_date": str(day), "to_date": str(day)}, headers=stranger.h())
    assert hidden.status_code == 404 and hidden.json()["code"] == "booking_not_found"
    await client.post(f"/v1/bookings/{other['id']}/cancel", json={}, headers=a.h())
    closed = await client.get(
        f"/v1/bookings/{other['id']}/slots",
        params={"from_date": str(day), "to_date": str(day)},
        headers=a.h(),
    )
    assert closed.status_code == 409 and closed.json()["code"] == "invalid_transition"
    wide = await client.get(
        path, params={"from_date": str(day), "to_date": str(day + dt.timedelta(days=60))}, headers=a.h()
    )
    assert wide.status_code == 422 and wide.json()["errors"][0]["field"] == "to_date"
