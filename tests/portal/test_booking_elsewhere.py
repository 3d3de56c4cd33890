"""A booking of another context (a personal one, opened while acting in an org) is said to be
not found here, like a client or a job of another context: with the way back to this context's
calendar and the hint to switch to the context it belongs to."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

from playwright.async_api import Page, expect

from tests.portal.conftest import api_as, sign_up_quickly


async def test_a_booking_of_another_context_says_where_to_look_and_the_way_back(page: Page) -> None:
    await sign_up_quickly(page, "elsewhere")
    await api_as(
        page,
        "PUT",
        "/v1/bookings/availability",
        {"time_zone": "Europe/Paris", "weekly": ["mon-sun 09:00-17:00"]},
    )
    service = await api_as(page, "POST", "/v1/bookings/services", {"name": "Haircut", "duration_minutes": 60})
    day = dt.date.today() + dt.timedelta(days=3)
    start = dt.datetime.combine(day, dt.time(10), ZoneInfo("Europe/Paris"))
    booking = await api_as(
        page, "POST", "/v1/bookings/holds", {"service_id": service["id"], "start_at": start.isoformat()}
    )
    org = f"else-{uuid.uuid4().hex[:8]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": org, "name": "Elsewhere Studio"})

    await page.goto(f"/o/{org}/calendar/bookings/{booking['id']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Booking not found")
    await expect(page.get_by_role("alert")).to_be_visible()
    await expect(page.get_by_text("switch to it to see this one")).to_be_visible()
    await page.get_by_role("link", name="← Calendar").click()
    await expect(page).to_have_url(f"{page.url.split('/o/')[0]}/o/{org}/calendar")

    # In its own context the same link shows the booking.
    await page.goto(f"/me/calendar/bookings/{booking['id']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Haircut · no client yet")
