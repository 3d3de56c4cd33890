"""A booking form sent again with changes after it booked (Back, edit, Book): nothing is booked
twice, and the visitor reads that the booking is made, with its link when this browser made
it, instead of "this idempotency key was used for a different request"."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, expect

from servers.public.resent import COOKIE
from tests.portal.test_public_pages import _bookings, _next_week, _provider
from tests.public.conftest import Visitor, details, free_starts, is_page, provider


async def test_back_edit_and_book_again_links_to_the_booking_made(page: Page, new_context: Any) -> None:
    slug, service = await _provider(page)
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/book/{slug}/{service['id']}?tz=UTC")
    await _next_week(visitor)
    await visitor.locator("a.slot").first.click()
    form = visitor.get_by_role("form", name="Your details")
    await form.get_by_label("Your name").fill("Ada")
    await form.get_by_label("Email").fill("ada@example.com")
    await form.get_by_role("button", name="Book").click()
    await expect(visitor.get_by_role("status")).to_contain_text("You are booked")
    manage_url = visitor.url

    await visitor.go_back()
    await form.get_by_label("Anything").fill("Second thoughts: short please")
    await form.get_by_role("button", name="Book").click()
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("You already booked this time")
    await expect(visitor.get_by_text("the changes were not sent")).to_be_visible()
    await visitor.get_by_role("link", name="Open your booking").click()
    await expect(visitor.get_by_text("Confirmed")).to_be_visible()
    assert visitor.url.split("?")[0] == manage_url.split("?")[0]
    assert len([b for b in await _bookings(page) if b["service"]["id"] == service["id"]]) == 1


async def test_a_key_sent_from_another_browser_reveals_no_booking(page: Page, live_server: str) -> None:
    slug, service = await _provider(page)
    times = f"/book/{slug}/{service['id']}"
    async with (
        httpx.AsyncClient(base_url=live_server) as first,
        httpx.AsyncClient(base_url=live_server) as other,
    ):
        start, another = (await free_starts(first, times))[:2]
        fields = {**await details(first, times, start), "start_at": start, "tz": "UTC", "name": "Kim"}
        booked = await first.post(times, data={**fields, "email": "kim@example.com"})
        assert booked.status_code == 303, booked.text[:300]
        # Someone else who learnt the form's key, on a form of their own.
        theirs = await details(other, times, another)
        sent = await other.post(times, data={**fields, "csrf": theirs["csrf"], "email": "eve@example.com"})
        is_page(sent, 409)
        assert "This form was already sent" in sent.text and "/manage/" not in sent.text
    assert len([b for b in await _bookings(page) if b["service"]["id"] == service["id"]]) == 1


async def test_the_remembered_booking_lasts_an_hour_and_is_secure_but_on_local_http(limited: Visitor) -> None:
    """The cookie holds a manage link: on a shared browser it must not outlive the moments a
    resent form needs, nor travel over plain http to a site served over https (the app sees
    plain http behind its proxy, so the scheme alone cannot decide)."""
    async with limited() as http:
        _, times = await provider(http)
        start = (await free_starts(http, times))[0]
        form = {
            **await details(http, times, start),
            "start_at": start,
            "tz": "UTC",
            "name": "Kim",
            "email": "k@x.org",
        }
        seen = {}
        # Resent as it was, the form replays the booking and remembers it again.
        for url, host in [
            (f"http://testserver{times}", "shop.example"),  # a proxy in front, speaking http
            (f"https://testserver{times}", "127.0.0.1:8000"),
            (f"http://testserver{times}", "127.0.0.1:8000"),
            (f"http://testserver{times}", "localhost"),
        ]:
            booked = await http.post(url, data=form, headers={"host": host})
            assert booked.status_code == 303, booked.text[:300]
            [cookie] = [c for c in booked.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}=")]
            assert "Max-Age=3600;" in cookie and "HttpOnly" in cookie, cookie
            seen[(url.split(":")[0], host)] = "; secure" in cookie.lower()
    assert seen == {
        ("http", "shop.example"): True,
        ("https", "127.0.0.1:8000"): True,
        ("http", "127.0.0.1:8000"): False,
        ("http", "localhost"): False,
    }
