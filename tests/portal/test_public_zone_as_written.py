"""A time linked by hand without a chosen zone (no `tz`) is shown as it was written, with its own
offset, never silently in UTC; the move page's confirmation falls back to the zone the booking
was made in, as the move page itself does."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from playwright.async_api import Page, expect

from core.bookings.public import PublicBookIn, public_book, public_slots
from core.uow import Database
from servers.public.render import when
from tests.portal.conftest import api_as, sign_up_quickly
from tests.portal.test_public_pages import _bookings, _is_page, _provider


def _label(start: dt.datetime) -> str:
    minutes = int((start.utcoffset() or dt.timedelta(0)).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


async def test_a_time_linked_without_a_zone_is_shown_as_written(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    day = dt.date.today() + dt.timedelta(days=5)
    free = (await public_slots(db, slug, uuid.UUID(service["id"]), day, 1, "Europe/Paris")).slots
    start = free[0].start.astimezone(ZoneInfo("Europe/Paris"))
    written = start.isoformat()  # e.g. 2026-12-12T09:00:00+01:00, as a hand-made link has it
    times = f"/book/{slug}/{service['id']}"
    async with httpx.AsyncClient(base_url=live_server) as client:
        form = await client.get(f"{times}/details", params={"start": written})
        _is_page(form, 200)
        assert f"{when(start)} ({_label(start)})" in form.text
        assert "(UTC)" not in form.text
        assert 'name="tz" value="" data-detect="yes"' in form.text
        assert f'href="{times}?"' in form.text or f'href="{times}"' in form.text  # no zone forced back
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        booked = await client.post(
            times,
            data={"csrf": csrf.group(1), "start_at": written, "tz": "", "name": "Ana", "email": "a@x.org"},
        )
        assert booked.status_code == 303, booked.text[:300]
    [made] = await _bookings(page)
    assert dt.datetime.fromisoformat(made["start_at"]) == start
    # None was chosen: the booking stores none (not Paris as written, not UTC), so its reminder
    # falls back to the provider's zone.
    assert made["client_time_zone"] is None


async def test_a_hand_linked_time_is_booked_in_the_visitors_own_zone(
    page: Page, live_server: str, db: Database, new_context: Any
) -> None:
    """In a browser, the form's script fills the zone nobody chose with the visitor's own: the
    booking (its manage page, its reminders) speaks Tokyo time to a visitor in Tokyo."""
    slug, service = await _provider(page)
    day = dt.date.today() + dt.timedelta(days=6)
    free = (await public_slots(db, slug, uuid.UUID(service["id"]), day, 1, "Europe/Paris")).slots
    start = free[0].start.astimezone(ZoneInfo("Europe/Paris"))
    visitor = await (await new_context(timezone_id="Asia/Tokyo", locale="en-US")).new_page()
    await visitor.goto(f"/book/{slug}/{service['id']}/details?" + urlencode({"start": start.isoformat()}))
    form = visitor.get_by_role("form", name="Your details")
    await form.get_by_label("Your name").fill("Kenji")
    await form.get_by_label("Email").fill("kenji@example.com")
    await form.get_by_role("button", name="Book").click()
    await expect(visitor.get_by_text("(Asia/Tokyo)")).to_be_visible()
    [made] = await _bookings(page)
    assert made["client_time_zone"] == "Asia/Tokyo"
    assert dt.datetime.fromisoformat(made["start_at"]) == start


async def test_the_move_confirmation_uses_the_bookings_own_zone(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    day = dt.date.today() + dt.timedelta(days=3)
    slots = (await public_slots(db, slug, uuid.UUID(service["id"]), day, 1, "Asia/Tokyo")).slots
    data = PublicBookIn(
        service_id=uuid.UUID(service["id"]),
        start_at=slots[0].start,
        name="Kim",
        email="kim@example.com",
        time_zone="Asia/Tokyo",
    )
    token = (await public_book(db, slug, data)).manage_token
    target = slots[1].start.astimezone(dt.UTC)
    tokyo = ZoneInfo("Asia/Tokyo")
    async with httpx.AsyncClient(base_url=live_server) as client:
        preview = await client.get(
            f"/manage/{token}/reschedule/confirm?" + urlencode({"start": target.isoformat()})
        )
    _is_page(preview, 200)
    shown = f"From {when(slots[0].start, 'Asia/Tokyo')} to <strong>{when(target.astimezone(tokyo))}</strong>"
    assert f"{shown} (Asia/Tokyo)" in preview.text
    assert 'name="tz" value="Asia/Tokyo"' in preview.text


async def test_a_chosen_zone_is_kept_on_the_way_to_the_times(page: Page, live_server: str) -> None:
    slug, service = await _provider(page)
    async with httpx.AsyncClient(base_url=live_server) as client:
        chosen = await client.get(f"/book/{slug}", params={"tz": "Asia/Tokyo"})
        plain = await client.get(f"/book/{slug}")
        unknown = await client.get(f"/book/{slug}", params={"tz": "Mars/Olympus"})
    assert f'href="/book/{slug}/{service["id"]}?tz=Asia%2FTokyo"' in chosen.text
    for answer in (plain, unknown):
        assert f'href="/book/{slug}/{service["id"]}"' in answer.text


async def conversation_link(page: Page, prefix: str) -> tuple[str, dict[str, Any]]:
    """A provider signed up as `prefix`, a thread with a client, and that client's link: the
    thread's id and the link (`token`, `url`)."""
    await sign_up_quickly(page, prefix)
    client = await api_as(page, "POST", "/v1/clients", {"name": "Aiko", "email": "aiko@example.com"})
    thread = (
        await api_as(page, "POST", "/v1/messaging/threads", {"client_id": client["id"], "body": "Hello Aiko"})
    )["thread"]
    return thread["id"], await api_as(page, "GET", f"/v1/messaging/threads/{thread['id']}/client-link")


async def test_a_conversation_says_its_times_in_the_visitors_zone(page: Page, new_context: Any) -> None:
    _, link = await conversation_link(page, "convzone")
    visitor = await (await new_context(timezone_id="Asia/Tokyo", locale="en-US")).new_page()
    answer = await visitor.goto(f"/c/{link['token']}")
    assert answer is not None and " UTC</time>" in await answer.text()  # as written, without the script
    shown = visitor.get_by_role("list", name="Messages").locator("time").first
    sent = dt.datetime.fromisoformat(str(await shown.get_attribute("datetime"))).astimezone(
        ZoneInfo("Asia/Tokyo")
    )
    await expect(shown).to_contain_text("GMT+9")
    await expect(shown).to_contain_text(f"{sent:%-I}:{sent:%M}")
