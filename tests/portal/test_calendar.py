"""A provider's calendar, as people use it: a booking made from a free slot of the day view,
moved through the reschedule preview (same booking afterwards) and cancelled with a reason; a
week across a DST change drawn in the provider's zone (not the browser's); the services editor
and the working hours editor with a date override."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any
from zoneinfo import ZoneInfo

from playwright.async_api import Browser, Locator, Page, Route, expect

from tests.portal.conftest import api_as, screenshot, sign_up_quickly

PARIS = ZoneInfo("Europe/Paris")


def _t(start: str, end: str) -> str:
    """A time range as the portal writes it (with an en dash)."""
    return f"{start}\N{EN DASH}{end}"


async def _provider(page: Page) -> dict[str, Any]:
    await api_as(
        page,
        "PUT",
        "/v1/bookings/availability",
        {"time_zone": "Europe/Paris", "weekly": ["mon-sun 09:00-17:00"]},
    )
    service: dict[str, Any] = await api_as(
        page,
        "POST",
        "/v1/bookings/services",
        {
            "name": "Haircut",
            "duration_minutes": 60,
            "max_advance_days": 730,
            "price": {"amount": "35", "currency": "EUR"},
        },
    )
    return service


async def test_book_from_the_calendar_reschedule_through_the_preview_and_cancel(page: Page) -> None:
    await sign_up_quickly(page, "cal")
    await _provider(page)
    day = (dt.datetime.now(PARIS) + dt.timedelta(days=7)).date().isoformat()

    await page.goto(f"/me/calendar?view=day&date={day}")
    await expect(page.get_by_text("No bookings this day.")).to_be_visible()
    slots = page.get_by_role("group", name="Free times")
    await slots.get_by_role("button", name="10:00", exact=True).click()
    await page.get_by_label("Client name").fill("Ada Client")
    await page.get_by_label("Client email").fill("ada@example.com")
    await screenshot(page, "calendar-day")
    await page.get_by_role("button", name="Create booking").click()

    await expect(page).to_have_url(re.compile(r"/me/calendar/bookings/[0-9a-f-]{36}$"))
    booking_id = page.url.rsplit("/", 1)[1]
    await expect(page.get_by_role("heading", level=1)).to_have_text("Haircut · Ada Client")
    await expect(page.locator(".facts")).to_contain_text("Confirmed")
    await expect(page.locator(".facts")).to_contain_text(_t("10:00", "11:00"))

    # The client's manage link, on request.
    await page.get_by_role("button", name="Get the client's manage link").click()
    await expect(page.locator(".manage-link")).to_contain_text("/manage/")
    await expect(page.get_by_role("button", name="Copy manage link")).to_be_visible()

    # Reschedule: the times it could move to (not its own); the preview changes nothing until
    # it is confirmed.
    new_time = page.get_by_role("group", name="New time")
    await expect(new_time.get_by_role("button", name="11:00", exact=True)).to_be_visible()
    await expect(new_time.get_by_role("button", name="10:00", exact=True)).to_have_count(0)
    await new_time.get_by_role("button", name="14:00", exact=True).click()
    await page.get_by_role("button", name="Preview the change").click()
    preview = page.get_by_role("region", name="Preview of the change")
    await expect(preview).to_contain_text("Nothing is changed yet")
    await expect(preview).to_contain_text(_t("14:00", "15:00"))
    # The change lines too are on the provider's clock (Paris), not the API's UTC instants.
    lines = preview.get_by_role("list", name="What changes").get_by_role("listitem")
    await expect(lines.first).to_have_text(re.compile(r"^Start: .* 10:00 → .* 14:00$"))
    await expect(lines.nth(1)).to_have_text(re.compile(r"^End: .* 11:00 → .* 15:00$"))
    await expect(preview).not_to_contain_text(re.compile(r"\d{2}:\d{2}:\d{2}|Z\b"))
    await screenshot(page, "booking-reschedule-preview")
    still = await api_as(page, "GET", f"/v1/bookings/{booking_id}")
    assert dt.datetime.fromisoformat(still["start_at"]).astimezone(PARIS).hour == 10
    await preview.get_by_role("button", name="Confirm the reschedule").click()
    await expect(page.locator("p.success")).to_contain_text(f"Same booking (id {booking_id})")
    moved = await api_as(page, "GET", f"/v1/bookings/{booking_id}")
    assert moved["id"] == booking_id and moved["status"] == "confirmed"
    assert dt.datetime.fromisoformat(moved["start_at"]).astimezone(PARIS).hour == 14
    assert len(moved["reschedules"]) == 1
    await expect(page.locator(".facts")).to_contain_text(_t("14:00", "15:00"))

    # Cancel with a reason.
    await page.get_by_label("Reason for cancelling").fill("The client is ill")
    await page.get_by_role("button", name="Cancel booking").click()
    asked = page.get_by_role("region", name="Cancel this booking?")
    await expect(asked).to_contain_text("Nothing is cancelled yet. No fee applies.")
    assert (await api_as(page, "GET", f"/v1/bookings/{booking_id}"))["status"] == "confirmed"
    await asked.get_by_role("button", name="Yes, cancel booking").click()
    await expect(page.locator("p.success")).to_have_text("Cancelled.")
    await expect(page.locator(".facts")).to_contain_text("The client is ill")
    gone = await api_as(page, "GET", f"/v1/bookings/{booking_id}")
    assert gone["status"] == "cancelled" and gone["cancellation"]["reason"] == "The client is ill"
    await screenshot(page, "booking")
    listed = await api_as(page, "GET", "/v1/bookings")
    assert [b["id"] for b in listed["items"]] == [booking_id]

    # The day view shows it, struck through as cancelled.
    await page.get_by_role("link", name=re.compile("Back to")).click()
    await expect(
        page.get_by_role("link", name=re.compile(_t("14:00", "15:00") + " Haircut, Ada Client, Cancelled"))
    ).to_be_visible()


async def _bookings_of(page: Page, day: str) -> list[dict[str, Any]]:
    """Every booking starting on `day` (Paris), as the REST API lists them."""
    start = dt.datetime.fromisoformat(day).replace(tzinfo=PARIS)
    listed = await api_as(
        page,
        "GET",
        "/v1/bookings?from_at={}&to_at={}".format(
            start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            (start + dt.timedelta(days=1)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ),
    )
    items: list[dict[str, Any]] = listed["items"]
    return items


async def test_a_booking_without_a_client_holds_nothing_and_the_retry_books_it(page: Page) -> None:
    await sign_up_quickly(page, "noclient")
    await _provider(page)
    day = (dt.datetime.now(PARIS) + dt.timedelta(days=8)).date().isoformat()

    await page.goto(f"/me/calendar?view=day&date={day}")
    await page.get_by_role("group", name="Free times").get_by_role("button", name="10:00", exact=True).click()
    await expect(page.get_by_label("How to book")).to_have_value("confirm")
    await page.get_by_role("button", name="Create booking").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("this booking needs a client")
    assert await _bookings_of(page, day) == []  # nothing held behind the refusal
    await expect(page.get_by_label("Client email")).to_have_attribute("aria-invalid", "true")

    await page.get_by_label("Client name").fill("Nadia Late")
    await page.get_by_label("Client email").fill("nadia@example.com")
    await page.get_by_role("button", name="Create booking").click()
    await expect(page).to_have_url(re.compile(r"/me/calendar/bookings/[0-9a-f-]{36}$"))
    await expect(page.locator(".facts")).to_contain_text("Confirmed")
    [booking] = await _bookings_of(page, day)
    assert booking["status"] == "confirmed"
    assert booking["client"]["email"] == "nadia@example.com"
    assert booking["id"] == page.url.rsplit("/", 1)[1]


async def test_a_hold_without_a_client_is_confirmed_once_the_client_is_given(page: Page) -> None:
    await sign_up_quickly(page, "heldnoone")
    await _provider(page)
    day = (dt.datetime.now(PARIS) + dt.timedelta(days=10)).date().isoformat()

    await page.goto(f"/me/calendar?view=day&date={day}")
    await page.get_by_role("group", name="Free times").get_by_role("button", name="10:00", exact=True).click()
    await page.get_by_label("How to book").select_option("hold")
    await page.get_by_role("button", name="Create booking").click()
    await expect(page).to_have_url(re.compile(r"/me/calendar/bookings/[0-9a-f-]{36}$"))
    booking_id = page.url.rsplit("/", 1)[1]
    await expect(page.locator(".facts")).to_contain_text("Held")

    # Confirm asks who the client is; without a way to reach them, nothing is sent.
    confirm = page.get_by_role("button", name="Confirm", exact=True)
    await confirm.click()
    asked = page.get_by_role("form", name="Who is the client?")
    await expect(confirm).to_have_attribute("aria-expanded", "true")
    await expect(confirm).to_have_attribute("aria-controls", "confirm-client")
    await expect(asked.get_by_label("Client name")).to_be_focused()  # the keyboard follows
    await asked.get_by_label("Client name").fill("Hold Owner")
    await asked.get_by_role("button", name="Confirm with this client").click()
    await expect(asked.get_by_role("alert")).to_contain_text("a client needs an email or a phone number")
    assert (await api_as(page, "GET", f"/v1/bookings/{booking_id}"))["status"] == "held"

    await asked.get_by_label("Client email").fill("owner@example.com")
    await asked.get_by_role("button", name="Confirm with this client").click()
    await expect(page.locator("p.success")).to_have_text("Confirmed.")
    await expect(page.locator(".facts")).to_contain_text("Confirmed")
    await expect(page.locator(".facts")).to_contain_text("owner@example.com")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Haircut · Hold Owner")
    done = await api_as(page, "GET", f"/v1/bookings/{booking_id}")
    assert done["status"] == "confirmed" and done["client"]["email"] == "owner@example.com"


async def test_a_hold_whose_confirmation_fails_is_released_and_the_retry_books_it(page: Page) -> None:
    await sign_up_quickly(page, "release")
    await _provider(page)
    day = (dt.datetime.now(PARIS) + dt.timedelta(days=9)).date().isoformat()

    # The first confirmation reaches the real API altered so that the API refuses it (a client
    # of no one's: 404), as any refusal after the hold would be; the next ones go through as sent.
    refused: list[str] = []

    async def refuse_once(route: Route) -> None:
        if refused:
            await route.fallback()
            return
        refused.append(route.request.url)
        answer = await route.fetch(post_data=json.dumps({"client_id": str(uuid.uuid4())}))
        assert answer.status == 404
        await route.fulfill(response=answer)

    await page.route("**/v1/bookings/*/confirm", refuse_once)
    await page.goto(f"/me/calendar?view=day&date={day}")
    await page.get_by_role("group", name="Free times").get_by_role("button", name="10:00", exact=True).click()
    await page.get_by_label("Client name").fill("Rosa Retry")
    await page.get_by_label("Client email").fill("rosa@example.com")
    await page.get_by_role("button", name="Create booking").click()
    await expect(page.get_by_role("alert")).to_contain_text("Could not book this time")
    assert len(refused) == 1
    # The hold was released (before the error was shown): nothing blocks the time any more.
    assert await _statuses(page, day) == ["cancelled"]

    await page.get_by_role("button", name="Create booking").click()
    await expect(page).to_have_url(re.compile(r"/me/calendar/bookings/[0-9a-f-]{36}$"))
    await expect(page.locator(".facts")).to_contain_text("Confirmed")
    assert sorted(await _statuses(page, day)) == ["cancelled", "confirmed"]


async def test_a_confirmation_whose_answer_is_lost_is_kept_not_released(page: Page) -> None:
    await sign_up_quickly(page, "lost")
    await _provider(page)
    day = (dt.datetime.now(PARIS) + dt.timedelta(days=10)).date().isoformat()

    # The real API confirms; the browser only sees the connection fail.
    async def lose_the_answer(route: Route) -> None:
        answer = await route.fetch()
        assert answer.status == 200
        await route.abort("connectionreset")

    await page.route("**/v1/bookings/*/confirm", lose_the_answer)
    await page.goto(f"/me/calendar?view=day&date={day}")
    await page.get_by_role("group", name="Free times").get_by_role("button", name="11:00", exact=True).click()
    await page.get_by_label("Client name").fill("Lena Lost")
    await page.get_by_label("Client email").fill("lena@example.com")
    await page.get_by_role("button", name="Create booking").click()
    await expect(page).to_have_url(re.compile(r"/me/calendar/bookings/[0-9a-f-]{36}$"))
    await expect(page.locator(".facts")).to_contain_text("Confirmed")
    assert await _statuses(page, day) == ["confirmed"]


async def _statuses(page: Page, day: str) -> list[str]:
    return [b["status"] for b in await _bookings_of(page, day)]


def _next_spring_forward() -> dt.date:
    """The next Sunday Paris moves to summer time with the whole week before it still ahead (the
    service books up to two years out): the week is the same whatever day the suite runs."""

    def noon(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(12), tzinfo=PARIS)

    day = dt.datetime.now(PARIS).date() + dt.timedelta(days=7)
    while noon(day).dst() == noon(day - dt.timedelta(days=1)).dst() or not noon(day).dst():
        day += dt.timedelta(days=1)
    return day


async def test_a_week_across_a_dst_change_in_the_providers_zone(browser: Browser, live_server: str) -> None:
    # The browser is in Los Angeles, the provider works in Paris: times are Paris times.
    ctx = await browser.new_context(
        base_url=live_server, viewport={"width": 1400, "height": 900}, timezone_id="America/Los_Angeles"
    )
    ctx.set_default_timeout(5_000)
    try:
        page = await ctx.new_page()
        await sign_up_quickly(page, "dst")
        svc = await _provider(page)

        async def book(local: dt.datetime, name: str) -> dict[str, Any]:
            body = {
                "service_id": svc["id"],
                "start_at": local.replace(tzinfo=PARIS).isoformat(),
                "client_name": name,
                "client_email": f"{name.split()[0].lower()}@example.com",
            }
            held: dict[str, Any] = await api_as(page, "POST", "/v1/bookings/holds", body)
            return held

        # Europe/Paris moves to summer time at 02:00 on a Sunday at the end of March: bookings
        # from the Wednesday before to that Sunday (dates computed, so the week is never past).
        sunday = _next_spring_forward()

        def on(days_before: int, hour: int) -> dt.datetime:
            return dt.datetime.combine(sunday - dt.timedelta(days=days_before), dt.time(hour))

        held = await book(on(4, 12), "Held Hugo")
        requested = await api_as(
            page,
            "POST",
            "/v1/bookings/requests",
            {
                "service_id": svc["id"],
                "start_at": on(3, 11).replace(tzinfo=PARIS).isoformat(),
                "client_name": "Rita Request",
                "client_email": "rita@example.com",
            },
        )
        before = await book(on(2, 10), "Winter Wanda")
        after = await book(on(0, 10), "Summer Sam")
        cancelled = await book(on(1, 15), "Gone Gus")
        for b in (before, after, cancelled):
            await api_as(page, "POST", f"/v1/bookings/{b['id']}/confirm", {})
        await api_as(page, "POST", f"/v1/bookings/{cancelled['id']}/cancel", {"reason": "moved away"})
        utc_hour = [dt.datetime.fromisoformat(b["start_at"]).astimezone(dt.UTC).hour for b in (before, after)]
        assert utc_hour == [9, 8]  # 10:00 CET, then 10:00 CEST

        await page.goto(f"/me/calendar?view=week&date={sunday - dt.timedelta(days=2)}")
        await expect(page.get_by_text("Times in Europe/Paris")).to_be_visible()
        days = page.locator(".week-day")
        await expect(days).to_have_count(7)
        expected = {
            2: (_t("12:00", "13:00"), "Held Hugo", "Held"),
            3: (_t("11:00", "12:00"), "Rita Request", "Requested"),
            4: (_t("10:00", "11:00"), "Winter Wanda", "Confirmed"),
            5: (_t("15:00", "16:00"), "Gone Gus", "Cancelled"),
            6: (_t("10:00", "11:00"), "Summer Sam", "Confirmed"),
        }
        for i in range(7):
            if i in expected:
                time, who, status = expected[i]
                chip = days.nth(i).get_by_role("link", name=f"{time} Haircut, {who}, {status}")
                await expect(chip).to_be_visible()
                await expect(chip).to_have_class(re.compile(f"status-{status.lower()}"))
            else:
                await expect(days.nth(i)).to_contain_text("Free")
        assert held["status"] == "held" and requested["status"] == "requested"
        await screenshot(page, "calendar-week")

        # A request is confirmed or declined from its page; a decline needs its reason.
        await days.nth(3).get_by_role("link", name=re.compile("Rita Request")).click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Haircut · Rita Request")
        await expect(page.locator(".facts")).to_contain_text("Thursday")
        await page.get_by_role("button", name="Decline").click()
        await expect(page.get_by_role("alert")).to_be_visible()
        await page.get_by_label("Reason for declining").fill("Fully booked that week")
        await page.get_by_role("button", name="Decline").click()
        await expect(page.locator("p.success")).to_have_text("Declined.")
        declined = await api_as(page, "GET", f"/v1/bookings/{requested['id']}")
        assert declined["status"] == "declined" and declined["decline_reason"] == "Fully booked that week"
    finally:
        await ctx.close()


LONG_NAME = "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaftschafers"

Box = dict[str, float]


def _inside(inner: Box, outer: Box) -> bool:
    return inner["x"] >= outer["x"] - 0.5 and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5


def _overlap(a: Box, b: Box) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 0.5
        and b["x"] < a["x"] + a["width"] - 0.5
        and a["y"] < b["y"] + b["height"] - 0.5
        and b["y"] < a["y"] + a["height"] - 0.5
    )


async def _box(locator: Locator) -> Box:
    box = await locator.bounding_box()
    assert box is not None
    return {"x": box["x"], "y": box["y"], "width": box["width"], "height": box["height"]}


async def test_the_week_stays_readable_on_a_phone_and_long_names_stay_in_their_column(
    browser: Browser, live_server: str
) -> None:
    ctx = await browser.new_context(
        base_url=live_server,
        viewport={"width": 390, "height": 844},
        locale="en-US",
        timezone_id="Europe/Paris",
    )
    ctx.set_default_timeout(5_000)
    try:
        page = await ctx.new_page()
        await sign_up_quickly(page, "phone")
        svc = await _provider(page)
        monday = dt.datetime.now(PARIS).date() + dt.timedelta(days=7)
        monday -= dt.timedelta(days=monday.weekday())
        for offset, hour, name in ((0, 10, LONG_NAME), (0, 14, "Ada"), (2, 9, "Bo"), (6, 16, "Cy")):
            start = dt.datetime.combine(monday + dt.timedelta(days=offset), dt.time(hour), tzinfo=PARIS)
            await api_as(
                page,
                "POST",
                "/v1/bookings/requests",
                {
                    "service_id": svc["id"],
                    "start_at": start.isoformat(),
                    "client_name": name,
                    "client_email": f"{name[:8].lower()}@example.com",
                },
            )
        await page.goto(f"/me/calendar?view=week&date={monday}")
        days = [monday + dt.timedelta(days=i) for i in range(7)]
        regions = [page.get_by_role("region", name=f"{d:%A}, {d:%B} {d.day}", exact=True) for d in days]
        long_chip = regions[0].get_by_role("link", name=re.compile(LONG_NAME))
        await expect(long_chip).to_be_visible()
        await expect(regions[6].get_by_role("link", name=re.compile("Haircut, Cy"))).to_be_visible()

        for width in (390, 1200):
            await page.set_viewport_size({"width": width, "height": 844})
            boxes = [await _box(r) for r in regions]
            for i, a in enumerate(boxes):
                assert a["x"] >= 0 and a["x"] + a["width"] <= width, f"day {i} leaves the page at {width}px"
                for j in range(i + 1, 7):
                    assert not _overlap(a, boxes[j]), f"days {i} and {j} overlap at {width}px"
            # Every card stays within its day's column, and the long name within its card.
            for region, box in zip(regions, boxes, strict=True):
                for chip in await region.get_by_role("link", name=re.compile("Haircut")).all():
                    assert _inside(await _box(chip), box)
            written = long_chip.get_by_text(LONG_NAME)
            assert _inside(await _box(written), await _box(long_chip)), (
                f"the long name overflows at {width}px"
            )
            scroll_width = await page.evaluate("document.documentElement.scrollWidth")
            assert scroll_width <= width, f"the page scrolls sideways at {width}px"
            if width == 390:
                await screenshot(page, "calendar-week-phone")

        # The day view on a phone: the new-booking panel under the day's bookings, not beside.
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.goto(f"/me/calendar?view=day&date={monday}")
        listed = await _box(page.get_by_role("region", name="Bookings of the day"))
        panel = await _box(page.get_by_role("region", name="New booking"))
        assert not _overlap(listed, panel) and panel["y"] >= listed["y"] + listed["height"]
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        await ctx.close()


async def test_the_services_editor_saves(page: Page) -> None:
    await sign_up_quickly(page, "svc")
    await page.goto("/me/services")
    await expect(page.get_by_text("No services yet.")).to_be_visible()
    await page.get_by_role("button", name="New service").click()
    form = page.get_by_role("form", name="New service")
    await form.get_by_label("Service name").fill("Colour")
    await form.get_by_label("Duration (minutes)").fill("90")
    await form.get_by_label("Buffer after (minutes)").fill("15")
    await form.get_by_label("Minimum notice (minutes)").fill("120")
    await form.get_by_label("Price", exact=True).fill("80")
    await form.get_by_label("Currency").fill("EUR")
    await form.get_by_role("button", name="Save service").click()
    await expect(page.get_by_role("status").filter(has_text="Saved Colour.")).to_be_visible()
    await expect(page.get_by_role("row").filter(has_text="Colour")).to_contain_text("80.00 EUR")

    await page.get_by_role("button", name="Edit Colour").click()
    form = page.get_by_role("form", name="Edit Colour")
    await form.get_by_label("Price", exact=True).fill("95.50")
    await form.get_by_label("Late cancellation fee").fill("20")
    await form.get_by_label("Approval required").select_option(label="Yes: clients send a request")
    await screenshot(page, "services")
    await form.get_by_role("button", name="Save service").click()
    await expect(page.get_by_role("row").filter(has_text="Colour")).to_contain_text("95.50 EUR")
    await expect(page.get_by_role("row").filter(has_text="Colour")).to_contain_text("approval required")
    [svc] = (await api_as(page, "GET", "/v1/bookings/services"))["items"]
    assert svc["price"] == {"amount": "95.50", "currency": "EUR"}
    assert svc["late_cancel_fee"] == {"amount": "20.00", "currency": "EUR"}
    assert svc["approval_required"] is True
    assert (svc["duration_minutes"], svc["buffer_after_minutes"], svc["min_notice_minutes"]) == (90, 15, 120)

    # A refusal is shown where it happened, with the API's field message.
    await page.get_by_role("button", name="Edit Colour").click()
    form = page.get_by_role("form", name="Edit Colour")
    await form.get_by_label("Duration (minutes)").fill("2")
    await form.get_by_role("button", name="Save service").click()
    await expect(form.get_by_role("alert")).to_contain_text("Could not save the service")


async def test_the_hours_editor_saves_an_override(page: Page) -> None:
    await sign_up_quickly(page, "hrs")
    await page.goto("/me/hours")
    await page.get_by_label("Time zone").fill("Europe/Paris")
    await page.get_by_label("Monday hours").fill("09:00-12:00, 13:00-17:00")
    await page.get_by_label("Tuesday hours").fill("09:00-17:00")
    await page.get_by_label("Override date").fill("2026-12-24")
    await page.get_by_label("Hours that day").fill("off")
    await page.get_by_role("button", name="Add override").click()
    await page.get_by_label("Override date").fill("2026-12-27")
    await page.get_by_label("Hours that day").fill("10:00-14:00")
    await page.get_by_role("button", name="Add override").click()
    await expect(page.get_by_role("row").filter(has_text="2026-12-24")).to_contain_text("Day off")
    await screenshot(page, "hours")
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()

    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert hours["time_zone"] == "Europe/Paris" and hours["configured"] is True
    assert sorted((w["weekday"], w["start"], w["end"]) for w in hours["weekly"]) == [
        ("mon", "09:00", "12:00"), ("mon", "13:00", "17:00"), ("tue", "09:00", "17:00"),
    ]  # fmt: skip
    assert {o["date"]: o["intervals"] for o in hours["overrides"]} == {
        "2026-12-24": [],
        "2026-12-27": [{"start": "10:00", "end": "14:00"}],
    }

    # Reloaded, the form shows what was saved; removing an override saves too.
    await page.reload()
    await expect(page.get_by_label("Monday hours")).to_have_value("09:00-12:00, 13:00-17:00")
    await page.get_by_role("button", name="Remove override 2026-12-24").click()
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert [o["date"] for o in hours["overrides"]] == ["2026-12-27"]
    # A bad range is refused with the API's message, where it happened.
    await page.get_by_label("Wednesday hours").fill("17:00-09:00")
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("alert")).to_contain_text("Could not save the working hours")


async def test_two_tabs_editing_the_hours_cannot_overwrite_each_other(page: Page) -> None:
    """The portal sends back the ETag it read (If-Match): the tab that saves second, on what it
    read before the first save, is refused in plain words, and nothing of it is written."""
    await sign_up_quickly(page, "tabs")
    await page.goto("/me/hours")
    await expect(page.get_by_label("Monday hours")).to_be_visible()
    other = await page.context.new_page()
    await other.goto("/me/hours")
    await other.get_by_label("Monday hours").fill("08:00-12:00")
    await other.get_by_role("button", name="Save working hours").click()
    await expect(other.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()

    await page.get_by_label("Monday hours").fill("14:00-18:00")
    await page.get_by_role("button", name="Save working hours").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Could not save the working hours")
    await expect(alert).to_contain_text("Someone changed this after you opened it")
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert [(w["weekday"], w["start"], w["end"]) for w in hours["weekly"]] == [("mon", "08:00", "12:00")]

    # Re-read, the change goes through.
    await page.reload()
    await expect(page.get_by_label("Monday hours")).to_have_value("08:00-12:00")
    await page.get_by_label("Monday hours").fill("14:00-18:00")
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert [(w["weekday"], w["start"], w["end"]) for w in hours["weekly"]] == [("mon", "14:00", "18:00")]
