"""A client books and moves only at the times their pages offer: a start off the service's grid
(12:07 for an hourly service), sent by hand, is refused with a page saying so and books nothing;
the move page never offers the booking's own time. The provider's doors keep placing a booking
anywhere in the hours."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from urllib.parse import unquote, urlencode

import httpx
import pytest
from playwright.async_api import Page, expect

from core.bookings.public import PublicBookIn, public_book, public_slots
from core.errors import ValidationFailed
from core.uow import Database
from tests.portal.conftest import api_as
from tests.portal.test_public_pages import _bookings, _is_page, _managed_booking, _provider


def _off_grid(day: dt.date) -> dt.datetime:
    """Inside the provider's Paris hours (09:00-17:00), but no hourly slot starts then."""
    return dt.datetime.combine(day, dt.time(12, 7), tzinfo=dt.UTC)


async def test_a_start_the_page_never_offered_books_nothing(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    asked = await api_as(
        page,
        "POST",
        "/v1/bookings/services",
        {"name": "Colour", "duration_minutes": 60, "approval_required": True},
    )
    day = dt.date.today() + dt.timedelta(days=4)
    for svc in (service, asked):  # a booking confirmed at once, and a request
        with pytest.raises(ValidationFailed) as refused:
            await public_book(
                db,
                slug,
                PublicBookIn(
                    service_id=uuid.UUID(svc["id"]), start_at=_off_grid(day), name="Lee", email="l@x.org"
                ),
            )
        assert refused.value.code == "slot_unavailable"
        assert [i.code for i in refused.value.errors] == ["not_offered"]
    token = await _managed_booking(db, slug, service)
    times, moves = f"/book/{slug}/{service['id']}", f"/manage/{token}/reschedule"
    start = _off_grid(day).isoformat()
    async with httpx.AsyncClient(base_url=live_server) as client:
        form = await client.get(f"/manage/{token}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        booked = await client.post(
            times,
            data={"csrf": csrf.group(1), "start_at": start, "tz": "UTC", "name": "Lee", "email": "l@x.org"},
        )
        preview = await client.get(f"{moves}/confirm", params={"start": start, "tz": "UTC"})
        moved = await client.post(moves, data={"csrf": csrf.group(1), "start_at": start, "tz": "UTC"})
        form_for_it = await client.get(f"{times}/details", params={"start": start, "tz": "UTC"})
        _is_page(form_for_it, 409)  # no form to fill for a time that is not offered
        assert "This time is not free." in form_for_it.text and 'name="csrf"' not in form_for_it.text
        for answer in (booked, preview, moved):
            _is_page(answer, 422)
            assert "This time is not one of the service&#39;s offered start times." in answer.text
            assert "Pick another time" in answer.text and "bookings_slots" not in answer.text
    [kept] = await _bookings(page)
    assert kept["start_at"] != start
    # The provider's own door still places one at 12:07.
    placed = await api_as(
        page,
        "POST",
        "/v1/bookings/holds",
        {"service_id": service["id"], "start_at": start},
    )
    assert dt.datetime.fromisoformat(placed["start_at"]) == _off_grid(day)


async def test_the_move_page_offers_other_times_only(page: Page, new_context: Any, db: Database) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    [booked] = await _bookings(page)
    start = dt.datetime.fromisoformat(booked["start_at"])
    free = await public_slots(db, slug, uuid.UUID(service["id"]), start.date(), 1, "UTC")
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/manage/{token}/reschedule?" + f"tz=UTC&from={start.date()}")
    offered = await visitor.locator("a.slot").evaluate_all("els => els.map(e => e.getAttribute('href'))")
    starts = {dt.datetime.fromisoformat(unquote(re.search(r"start=([^&]+)", h)[1])) for h in offered}  # type: ignore[index]
    assert starts and start not in starts
    assert {s.start for s in free.slots if s.start.date() == start.date()} <= starts
    label = f"{start:%A} {start.day} {start:%B}, {start:%H:%M}"
    await expect(visitor.get_by_role("link", name=label, exact=True)).to_have_count(0)
    after = start + dt.timedelta(hours=1)
    await expect(
        visitor.get_by_role("link", name=f"{after:%A} {after.day} {after:%B}, {after:%H:%M}", exact=True)
    ).to_have_count(1)
    # Its own time, asked for by hand, is refused as such: never "Your booking has moved".
    await visitor.goto(
        f"/manage/{token}/reschedule/confirm?" + urlencode({"start": start.isoformat(), "tz": "UTC"})
    )
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("This time can't be booked")
    await expect(visitor.get_by_text("This is already the booking's time.")).to_be_visible()
    await expect(visitor.get_by_role("button", name="Move booking")).to_have_count(0)
