"""A cancel reason the server refuses (a control character, more than 2,000 characters) brings
the booking's page back with the reason said beside the box and the text kept, the booking
untouched; never "That did not work" with the text gone and no way back."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, expect

from core.uow import Database
from tests.portal.test_public_pages import _bookings, _managed_booking, _provider
from tests.public.conftest import hidden, is_page


async def test_a_refused_cancel_reason_keeps_the_text_and_says_why(
    page: Page, new_context: Any, db: Database
) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/manage/{token}")
    cancel = visitor.get_by_role("form", name="Cancel this booking")
    reason = cancel.get_by_label("Reason (optional)")
    typed = "Ill \x01 sorry, <b>really</b>"
    await reason.fill(typed)
    await cancel.get_by_role("button", name="Cancel booking").click()
    await expect(visitor.get_by_role("alert")).to_have_text(
        "Remove the invisible control characters from this text."
    )
    await expect(reason).to_have_value(typed)
    await expect(reason).to_have_attribute("aria-invalid", "true")
    await expect(visitor.get_by_text("Confirmed")).to_be_visible()  # nothing was cancelled
    await reason.fill("Ill, sorry")
    await cancel.get_by_role("button", name="Cancel booking").click()
    await expect(visitor.get_by_role("status")).to_have_text("Your booking is cancelled.")
    [after] = [b for b in await _bookings(page) if b["service"]["id"] == service["id"]]
    assert after["status"] == "cancelled"


async def test_a_too_long_cancel_reason_comes_back_with_the_limit(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    async with httpx.AsyncClient(base_url=live_server) as http:
        csrf = hidden((await http.get(f"/manage/{token}")).text)["csrf"]
        refused = await http.post(f"/manage/{token}/cancel", data={"csrf": csrf, "reason": "x" * 2001})
    is_page(refused, 422)
    assert "Use at most 2000 characters." in refused.text
    assert "x" * 2001 in refused.text and f'action="/manage/{token}/cancel"' in refused.text
    assert f"/manage/{token}</code>" in refused.text  # the link to keep is the booking's, not the post's


async def test_a_refused_reason_on_a_booking_cancelled_meanwhile_says_so_and_keeps_the_text(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    async with httpx.AsyncClient(base_url=live_server) as http:
        csrf = hidden((await http.get(f"/manage/{token}")).text)["csrf"]
        # Cancelled in another tab; this one still shows the form.
        other = await http.post(f"/manage/{token}/cancel", data={"csrf": csrf, "reason": "Ill"})
        assert other.status_code == 303, other.text[:300]
        refused = await http.post(f"/manage/{token}/cancel", data={"csrf": csrf, "reason": "<i>y</i>" * 300})
    is_page(refused, 422)
    assert (
        "Use at most 2000 characters. This booking can no longer be cancelled: it is now cancelled."
        in refused.text
    )
    assert "&lt;i&gt;y&lt;/i&gt;" * 300 in refused.text and "readonly" in refused.text
    assert f'action="/manage/{token}/cancel"' not in refused.text
