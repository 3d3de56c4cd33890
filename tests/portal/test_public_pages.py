"""The clients' pages, as a visitor without an account uses them in a real Chromium: the booking
page, a slot picked in their time zone, the details form, the confirmation (the manage page)
with its calendar file, cancelling; a service that needs approval; a slot taken meanwhile; and
what a hostile visitor meets (escaping, CSRF, the honeypot, one 404 for every wrong address)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy import text

from core.bookings.public import PublicBookIn, public_book, public_slots
from core.bookings.schemas import bookable_range
from core.errors import Conflict, NotFound
from core.uow import Database
from tests.portal.conftest import api_as, screenshot, sign_up_quickly


async def _provider(page: Page, **service: Any) -> tuple[str, dict[str, Any]]:
    person = await sign_up_quickly(page, "pub")
    await api_as(
        page,
        "PUT",
        "/v1/bookings/availability",
        {"time_zone": "Europe/Paris", "weekly": ["mon-sun 09:00-17:00"]},
    )
    created = await api_as(
        page,
        "POST",
        "/v1/bookings/services",
        {"name": "Haircut", "duration_minutes": 60, "price": {"amount": "35", "currency": "EUR"}, **service},
    )
    return person.slug, created


async def _bookings(page: Page) -> list[dict[str, Any]]:
    return list((await api_as(page, "GET", "/v1/bookings?limit=100"))["items"])


async def _next_week(visitor: Page) -> None:
    """Show the week after this one. This week's first free time can start seconds from now (at
    the turn of an hour, with no notice asked) and be past by the time the form is sent; next
    week's are days ahead, whatever time the suite runs at."""
    shown = dt.date.fromisoformat(await visitor.get_by_label("Week from").input_value())
    await visitor.get_by_role("link", name="Next week →").click()
    await expect(visitor.get_by_label("Week from")).to_have_value(str(shown + dt.timedelta(days=7)))


async def test_a_visitor_books_in_their_zone_gets_the_manage_page_and_cancels(
    page: Page, new_context: Any
) -> None:
    slug, service = await _provider(page)
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/book/{slug}")
    await expect(visitor.get_by_role("heading", level=1)).to_have_text(re.compile("Pub"))
    await screenshot(visitor, "public-booking-page")
    await visitor.get_by_role("link", name="Haircut").click()
    # The script picked the browser's zone (Chromium here runs in UTC unless told otherwise).
    await expect(visitor.get_by_label("Your time zone")).to_have_value(re.compile(r"\w"))
    await visitor.get_by_label("Your time zone").select_option("Asia/Tokyo")
    await visitor.get_by_role("button", name="Show times").click()
    await expect(visitor.get_by_text("Times are shown in Asia/Tokyo.")).to_be_visible()
    await screenshot(visitor, "public-times")
    await _next_week(visitor)
    await expect(visitor.get_by_text("Times are shown in Asia/Tokyo.")).to_be_visible()
    first = visitor.locator("a.slot").first
    label = await first.get_attribute("aria-label")
    assert label and re.search(r"\d\d:\d\d$", label)
    # Paris 09:00-17:00 is 16:00/17:00 to 00:00/01:00 in Tokyo (summer/winter): every hour-long
    # slot starts from 16:00 to 00:00 local, whatever time of day the test runs.
    labels = await visitor.locator("a.slot").evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    hours = {int(text[-5:-3]) for text in labels}
    assert hours and hours <= {*range(16, 24), 0}, hours
    await first.click()
    form = visitor.get_by_role("form", name="Your details")
    await form.get_by_label("Your name").fill("Ada <b>Lovelace</b>")
    await form.get_by_label("Email").fill("ada@example.com")
    await form.get_by_label("Anything").fill("<script>alert(1)</script>")
    await screenshot(visitor, "public-details")
    await form.get_by_role("button", name="Book").click()

    await expect(visitor.get_by_role("status")).to_contain_text("You are booked")
    assert "/manage/" in visitor.url
    await expect(visitor.get_by_text("Confirmed")).to_be_visible()
    await screenshot(visitor, "public-manage")
    assert (await visitor.locator("meta[name=robots]").get_attribute("content")) == "noindex, nofollow"
    [booked] = [b for b in await _bookings(page) if b["service"]["id"] == service["id"]]
    assert booked["status"] == "confirmed"
    assert booked["client"]["name"] == "Ada <b>Lovelace</b>"  # stored as typed, never as HTML
    assert booked["client_time_zone"] == "Asia/Tokyo"

    async with visitor.expect_download() as download:
        await visitor.get_by_role("link", name="Add to calendar (.ics)").click()
    ics = await (await download.value).path()
    assert "BEGIN:VEVENT" in ics.read_text()

    cancel = visitor.get_by_role("form", name="Cancel this booking")
    await cancel.get_by_label("Reason (optional)").fill("I am ill")
    await cancel.get_by_role("button", name="Cancel booking").click()
    await expect(visitor.get_by_role("status")).to_have_text("Your booking is cancelled.")
    await expect(visitor.get_by_role("button", name="Cancel booking")).to_have_count(0)
    [after] = [b for b in await _bookings(page) if b["id"] == booked["id"]]
    assert after["status"] == "cancelled"


async def test_a_service_needing_approval_sends_a_request(page: Page, new_context: Any) -> None:
    slug, service = await _provider(page, approval_required=True, name="Colour <i>deluxe</i>")
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/book/{slug}")
    # Provider text is text too: the tag is shown, never parsed.
    await expect(visitor.get_by_role("link", name="Colour <i>deluxe</i>")).to_be_visible()
    await expect(visitor.get_by_text("on request")).to_be_visible()
    await visitor.get_by_role("link", name="Colour <i>deluxe</i>").click()
    await _next_week(visitor)
    await visitor.locator("a.slot").first.click()
    form = visitor.get_by_role("form", name="Your details")
    await form.get_by_label("Your name").fill("Grace")
    await form.get_by_label("Phone (with country code)").fill("+33612345678")
    await form.get_by_role("button", name="Send request").click()
    await expect(visitor.get_by_role("status")).to_contain_text("Request sent")
    await expect(visitor.get_by_text("Waiting for confirmation")).to_be_visible()
    [booked] = [b for b in await _bookings(page) if b["service"]["id"] == service["id"]]
    assert booked["status"] == "requested"

    # The provider revokes the links given so far (say one was mis-sent): the old one is a 404
    # at once, the new one opens the booking.
    old = visitor.url
    await page.goto(f"/me/calendar/bookings/{booked['id']}")
    await page.get_by_role("button", name="Revoke earlier manage links").click()
    # The page's reschedule times load beside it in a status of their own ("Finding free times…").
    await expect(
        page.get_by_role("status").filter(has_text="Earlier manage links no longer work")
    ).to_be_visible()
    fresh = await page.locator(".manage-link .mono").text_content()
    gone = await visitor.goto(old)
    assert gone is not None and gone.status == 404
    assert fresh and "/manage/" in fresh
    opened = await visitor.goto(fresh[fresh.index("/manage/") :])
    assert opened is not None and opened.status == 200
    await expect(visitor.get_by_text("Waiting for confirmation")).to_be_visible()


async def test_two_browsers_race_for_one_slot_one_books_the_other_picks_again(
    page: Page, new_context: Any
) -> None:
    slug, _ = await _provider(page)
    visitors = [await (await new_context()).new_page() for _ in range(2)]
    taken = None
    for visitor, name in zip(visitors, ("Ann", "Bob"), strict=True):
        await visitor.goto(f"/book/{slug}")
        await visitor.get_by_role("link", name="Haircut").click()
        await _next_week(visitor)
        taken = await visitor.locator("a.slot").first.get_attribute("href")
        await visitor.locator("a.slot").first.click()
        form = visitor.get_by_role("form", name="Your details")
        await form.get_by_label("Your name").fill(name)
        await form.get_by_label("Email").fill(f"{name.lower()}@example.com")
    # Both press Book at the same moment.
    await asyncio.gather(*(v.get_by_role("button", name="Book").click() for v in visitors))
    outcomes = []
    for visitor in visitors:
        said = visitor.get_by_role("status").or_(visitor.get_by_role("alert"))
        await expect(said).to_be_visible()
        outcomes.append((await said.text_content() or "").strip())
    assert sorted(o.split(".")[0] for o in outcomes) == ["That time was just taken", "You are booked"], (
        outcomes
    )
    loser = visitors[[o.startswith("That time") for o in outcomes].index(True)]
    # The fresh list no longer offers the time that was taken, and still offers others.
    offered = [await a.get_attribute("href") for a in await loser.locator("a.slot").all()]
    assert taken and offered and taken not in offered
    assert len([b for b in await _bookings(page) if b["status"] == "confirmed"]) == 1


async def test_two_visitors_racing_for_one_slot_one_wins(page: Page, db: Database) -> None:
    slug, service = await _provider(page)
    day = dt.date.today() + dt.timedelta(days=2)
    slots = await public_slots(db, slug, uuid.UUID(service["id"]), day, 1, "Europe/Paris")
    start = slots.slots[0].start

    async def book(name: str) -> str:
        data = PublicBookIn(
            service_id=uuid.UUID(service["id"]), start_at=start, name=name, email=f"{name}@example.com"
        )
        try:
            return (await public_book(db, slug, data)).status
        except Conflict as error:
            return error.code

    results = sorted(await asyncio.gather(*(book(f"v{i}") for i in range(6))))
    assert results.count("confirmed") == 1
    assert set(results) == {"confirmed", "slot_taken"}


async def test_hostile_posts_and_wrong_addresses(
    page: Page, live_server: str, new_context: Any, db: Database
) -> None:
    slug, service = await _provider(page)
    other_page = await (await new_context()).new_page()
    other_slug, other_service = await _provider(other_page)
    async with httpx.AsyncClient(base_url=live_server) as client:
        # Another provider's service under this provider's page: unknown, never theirs.
        foreign = await client.get(f"/book/{slug}/{other_service['id']}")
        assert foreign.status_code == 404 and other_slug not in foreign.text
        assert (await client.get(f"/book/{other_slug}/{other_service['id']}")).status_code == 200
    day = dt.date.today() + dt.timedelta(days=2)
    theirs = (await public_slots(db, other_slug, uuid.UUID(other_service["id"]), day, 1, "UTC")).slots[0]
    with pytest.raises(NotFound):
        await public_book(
            db,
            slug,
            PublicBookIn(
                service_id=uuid.UUID(other_service["id"]),
                start_at=theirs.start,
                name="X",
                email="x@example.com",
            ),
        )
    async with httpx.AsyncClient(base_url=live_server) as client:
        missing = await client.get("/book/no-such-person-here")
        wrong_service = await client.get(f"/book/{slug}/00000000-0000-0000-0000-000000000000")
        wrong_token = await client.get("/manage/not-a-token")
        assert missing.status_code == wrong_service.status_code == wrong_token.status_code == 404
        assert missing.text == wrong_service.text == wrong_token.text
        assert "noindex" in missing.headers["x-robots-tag"]

        form_page = await client.get(f"/book/{slug}/{service['id']}")
        assert "script-src 'self'" in form_page.headers["content-security-policy"]
        assert "unsafe-inline" not in form_page.headers["content-security-policy"]
        start = re.search(r'start=([^&"]+)', form_page.text)
        assert start
        details = await client.get(f"/book/{slug}/{service['id']}/details?start={start.group(1)}&tz=UTC")
        csrf = re.search(r'name="csrf" value="([^"]+)"', details.text)
        assert csrf and client.cookies.get("atl_form") == csrf.group(1)
        start_at = re.search(r'name="start_at" value="([^"]+)"', details.text)
        assert start_at
        body = {"start_at": start_at.group(1), "tz": "UTC", "name": "Bot", "email": "bot@example.com"}

        no_token = await client.post(f"/book/{slug}/{service['id']}", data=body)
        assert no_token.status_code == 403 and "this form has expired" in no_token.text
        honeypot = await client.post(
            f"/book/{slug}/{service['id']}", data={**body, "csrf": csrf.group(1), "website": "http://spam"}
        )
        assert honeypot.status_code == 422
        invalid = await client.post(
            f"/book/{slug}/{service['id']}", data={**body, "csrf": csrf.group(1), "email": ""}
        )
        assert invalid.status_code == 422 and "email address or a phone number" in invalid.text
    assert await _bookings(page) == []


async def test_a_brand_site_is_config_only_and_answers_on_its_own_domain(
    page: Page, new_context: Any, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    hidden = await api_as(
        page, "POST", "/v1/bookings/services", {"name": "Staff only", "duration_minutes": 30}
    )
    brand_slug = f"maison-{uuid.uuid4().hex[:6]}"
    domain = f"{brand_slug}.example"
    config = {
        "tagline": "Hair, <em>simply</em>",
        "about": "Since 2019.\n\n<script>alert(1)</script>",
        "colours": {"primary": "#7a1f5c", "background": "#fff8f0", "text": "#222222"},
        "services": [service["id"]],
        "contact": {"email": "hello@example.com", "phone": "+33612345678"},
        "anything_else": {"kept": True},
    }
    await api_as(
        page,
        "POST",
        "/v1/brands",
        {"slug": brand_slug, "name": "Maison", "domains": [domain], "config": config},
    )

    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/site/{brand_slug}")
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("Maison")
    await screenshot(visitor, "public-brand-site")
    await expect(visitor.get_by_text("Hair, <em>simply</em>")).to_be_visible()  # text, never markup
    await expect(visitor.get_by_text("<script>alert(1)</script>")).to_be_visible()
    await expect(visitor.get_by_role("link", name="hello@example.com")).to_have_attribute(
        "href", "mailto:hello@example.com"
    )
    await expect(visitor.get_by_role("link", name="Staff only")).to_have_count(0)
    accent = await visitor.get_by_role("link", name="Haircut").evaluate("a => getComputedStyle(a).color")
    assert accent == "rgb(122, 31, 92)"  # the brand's primary colour, from its theme sheet
    await visitor.get_by_role("link", name="Haircut").click()
    assert (
        visitor.url.endswith(f"/book/{slug}/{service['id']}")
        or f"/book/{slug}/{service['id']}?" in visitor.url
    )
    await expect(visitor.locator("a.slot").first).to_be_visible()

    # A second brand of the same provider is one more row of config: no code, another look.
    second_slug = f"atelier-{uuid.uuid4().hex[:6]}"
    second = {"tagline": "Colour studio", "colours": {"primary": "#0a6b3d"}, "services": [hidden["id"]]}
    await api_as(
        page,
        "POST",
        "/v1/brands",
        {"slug": second_slug, "name": "Atelier", "domains": [f"{second_slug}.example"], "config": second},
    )
    await visitor.goto(f"/site/{second_slug}")
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("Atelier")
    await expect(visitor.get_by_text("Colour studio")).to_be_visible()
    await expect(visitor.get_by_role("link", name="Haircut")).to_have_count(0)
    staff = await visitor.get_by_role("link", name="Staff only").evaluate("a => getComputedStyle(a).color")
    assert staff == "rgb(10, 107, 61)"

    async with httpx.AsyncClient(base_url=live_server) as client:
        own = await client.get("/", headers={"host": domain})
        assert own.status_code == 200 and "<h1>Maison</h1>" in own.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in own.text
        other = await client.get("/", headers={"host": f"{second_slug}.example"})
        assert other.status_code == 200 and "<h1>Atelier</h1>" in other.text and "Maison" not in other.text
        platform = await client.get("/")
        assert "Maison" not in platform.text  # other hosts keep the portal
    # A config written before the site's keys were checked still shows the brand, plainly.
    async with db.system() as uow:
        await uow.session.execute(
            text('UPDATE platform.brands SET config = \'{"colours": "pink"}\' WHERE slug = :s'),
            {"s": second_slug},
        )
    async with httpx.AsyncClient(base_url=live_server) as client:
        plain = await client.get(f"/site/{second_slug}")
        assert (
            plain.status_code == 200
            and "<h1>Atelier</h1>" in plain.text
            and "Colour studio" not in plain.text
        )
    # A colour that is not #rrggbb is refused when the brand is saved, not when it is shown.
    csrf = next(c["value"] for c in await page.context.cookies() if c["name"] == "atlilith_csrf")
    auth = await page.context.request.post("/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    token = (await auth.json())["access_token"]
    refused = await page.context.request.post(
        "/v1/brands",
        data={"slug": f"x{brand_slug}", "name": "X", "config": {"colours": {"primary": "red}body{x"}}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status == 422, await refused.text()
    assert "colours.primary" in await refused.text()


async def test_the_client_reads_and_replies_and_a_revoked_link_stops_working(
    page: Page, new_context: Any, live_server: str
) -> None:
    await sign_up_quickly(page, "talk")
    client = await api_as(page, "POST", "/v1/clients", {"name": "Ines", "email": "ines@example.com"})
    thread = (
        await api_as(
            page,
            "POST",
            "/v1/messaging/threads",
            {"client_id": client["id"], "subject": "Your colour", "body": "Hello Ines, <b>see you</b> soon?"},
        )
    )["thread"]
    link = await api_as(page, "GET", f"/v1/messaging/threads/{thread['id']}/client-link")
    assert link["active"] and link["generation"] == 1 and link["url"].endswith(f"/c/{link['token']}")

    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/c/{link['token']}")
    messages = visitor.get_by_role("list", name="Messages")
    await expect(messages).to_contain_text("Hello Ines, <b>see you</b> soon?")  # text, never markup
    assert (await visitor.locator("meta[name=robots]").get_attribute("content")) == "noindex, nofollow"
    form = visitor.get_by_role("form", name="Reply")
    await form.get_by_label("Your reply").fill("Yes! <script>alert(1)</script>")
    await form.get_by_role("button", name="Send reply").click()
    await expect(visitor.get_by_role("status")).to_have_text("Reply sent.")
    await expect(messages).to_contain_text("Yes! <script>alert(1)</script>")
    await screenshot(visitor, "public-conversation")

    # The reply is an inbound message of the thread, in the provider's inbox, unread.
    detail = await api_as(page, "GET", f"/v1/messaging/threads/{thread['id']}")
    assert detail["thread"]["unread_count"] == 1
    inbound = [m for m in detail["messages"] if m["direction"] == "in"]
    assert [m["untrusted_body"] for m in inbound] == ["Yes! <script>alert(1)</script>"]

    # A resent form (same key) makes one message, not two.
    async with httpx.AsyncClient(base_url=live_server) as http:
        shown = await http.get(f"/c/{link['token']}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', shown.text)
        key = re.search(r'name="key" value="([^"]+)"', shown.text)
        assert csrf and key
        for _ in range(2):
            sent = await http.post(
                f"/c/{link['token']}", data={"csrf": csrf.group(1), "key": key.group(1), "body": "Twice?"}
            )
            assert sent.status_code == 303
    detail = await api_as(page, "GET", f"/v1/messaging/threads/{thread['id']}")
    assert sum(m["direction"] == "in" for m in detail["messages"]) == 2

    # The provider revokes the link in the portal: it stops opening the conversation at once.
    await page.goto(f"/me/inbox/{thread['id']}")
    await page.get_by_role("button", name="Revoke the client's link").click()
    await expect(page.get_by_role("status").filter(has_text="Link revoked")).to_be_visible()
    gone = await visitor.goto(f"/c/{link['token']}")
    assert gone is not None and gone.status == 404
    # The next message issues a new link; the old one stays dead.
    await api_as(page, "POST", f"/v1/messaging/threads/{thread['id']}/messages", {"body": "New link"})
    again = await api_as(page, "GET", f"/v1/messaging/threads/{thread['id']}/client-link")
    assert again["active"] and again["generation"] == 2 and again["token"] != link["token"]
    dead = await visitor.goto(f"/c/{link['token']}")
    assert dead is not None and dead.status == 404
    await visitor.goto(f"/c/{again['token']}")
    await expect(visitor.get_by_role("list", name="Messages")).to_contain_text("New link")


async def _managed_booking(db: Database, slug: str, service: dict[str, Any]) -> str:
    """A booking made on the provider's page, by core; its manage token."""
    day = dt.date.today() + dt.timedelta(days=3)
    slot = (await public_slots(db, slug, uuid.UUID(service["id"]), day, 1, "UTC")).slots[0]
    data = PublicBookIn(
        service_id=uuid.UUID(service["id"]), start_at=slot.start, name="Kim", email="kim@example.com"
    )
    return (await public_book(db, slug, data)).manage_token


def _is_page(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("text/html"), response.headers["content-type"]
    assert "problems/" not in response.text


async def test_dates_and_times_no_one_can_book_answer_with_a_page(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    times, moves = f"/book/{slug}/{service['id']}", f"/manage/{token}/reschedule"
    last = bookable_range()[1]
    async with httpx.AsyncClient(base_url=live_server) as client:
        for path in (times, moves):
            # Past the last bookable day (and past what a date can hold a week later): the last
            # week that can be booked, said so.
            for far in ("9999-12-31", (last + dt.timedelta(days=1)).isoformat()):
                shown = await client.get(path, params={"from": far, "tz": "UTC"})
                _is_page(shown, 400)
                assert "Times can be booked up to" in shown.text
                assert f'value="{last - dt.timedelta(days=6)}"' in shown.text
                assert "Next week" not in shown.text
            garbled = await client.get(path, params={"from": "31/12/2026", "tz": "Mars/Olympus"})
            _is_page(garbled, 400)
            assert "That date was not understood" in garbled.text
            assert "Times are shown in UTC." in garbled.text
            earlier = await client.get(path, params={"from": "0001-01-01", "tz": "UTC"})
            _is_page(earlier, 200)
            assert f'value="{dt.datetime.now(dt.UTC).date()}"' in earlier.text
        # A start nobody can book: said up front, for a date far away whatever its offset.
        for start in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+05:00", "2020-01-01T12:00:00+00:00"):
            for path in (f"{times}/details", f"{moves}/confirm"):
                refused = await client.get(path, params={"start": start, "tz": "UTC"})
                _is_page(refused, 400)
                assert "This time can" in refused.text and "Pick another time" in refused.text
        # An unknown page or link still answers the one 404, whatever the start.
        unknown = await client.get("/manage/not-a-token/reschedule/confirm?start=2020-01-01T12:00:00%2B00:00")
        assert unknown.status_code == 404

        form = await client.get(f"/manage/{token}")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        for start in ("9999-12-31T23:00:00-05:00", "2020-01-01T12:00:00+00:00"):
            moved = await client.post(moves, data={"csrf": csrf.group(1), "start_at": start, "tz": "UTC"})
            _is_page(moved, 422)
            assert "This time can" in moved.text
            booked = await client.post(
                times,
                data={
                    "csrf": csrf.group(1),
                    "start_at": start,
                    "tz": "UTC",
                    "name": "Lee",
                    "email": "l@x.org",
                },
            )
            _is_page(booked, 422)
            assert "This time can" in booked.text
    assert len(await _bookings(page)) == 1


async def test_a_visitor_asking_for_a_far_week_or_a_past_time_is_told_so(
    page: Page, new_context: Any
) -> None:
    slug, service = await _provider(page)
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/book/{slug}/{service['id']}?from=9999-12-31&tz=UTC")
    await expect(visitor.get_by_role("alert")).to_contain_text("Times can be booked up to")
    last_week = bookable_range()[1] - dt.timedelta(days=6)
    await expect(visitor.get_by_label("Week from")).to_have_value(last_week.isoformat())
    await expect(visitor.get_by_role("link", name="Next week →")).to_have_count(0)

    await visitor.goto(f"/book/{slug}/{service['id']}/details?start=2020-01-01T12:00:00%2B00:00&tz=UTC")
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("This time can't be booked")
    await expect(visitor.get_by_text("This time has passed.")).to_be_visible()
    await expect(visitor.get_by_role("form", name="Your details")).to_have_count(0)
    await visitor.get_by_role("link", name="Pick another time").click()
    await expect(visitor.get_by_role("heading", level=1)).to_contain_text("Haircut")

    # The form was opened in time, and the time passed before it was sent.
    await _next_week(visitor)
    await visitor.locator("a.slot").first.click()
    form = visitor.get_by_role("form", name="Your details")
    await form.locator("input[name=start_at]").evaluate("e => { e.value = '2020-01-01T12:00:00+00:00'; }")
    await form.get_by_label("Your name").fill("Ada")
    await form.get_by_label("Email").fill("ada@example.com")
    await form.get_by_role("button", name="Book").click()
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("This time can't be booked")
    await expect(visitor.get_by_role("link", name="Pick another time")).to_be_visible()
    assert await _bookings(page) == []


async def test_the_form_says_what_is_wrong_next_to_the_field(page: Page, new_context: Any) -> None:
    slug, service = await _provider(page)
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/book/{slug}/{service['id']}")
    await _next_week(visitor)
    await visitor.locator("a.slot").first.click()
    form = visitor.get_by_role("form", name="Your details")
    await form.get_by_label("Your name").fill("Ada <b>L</b>")
    await form.get_by_label("Phone (with country code)").fill("<i>abc</i>")
    await form.get_by_role("button", name="Book").click()
    alert = visitor.get_by_role("alert")
    await expect(alert).to_contain_text("There is a problem")
    await expect(alert.get_by_role("listitem")).to_have_text(["Not a phone number."])
    phone = form.get_by_label("Phone (with country code)")
    await expect(phone).to_have_accessible_description("Not a phone number.")
    await expect(phone).to_have_attribute("aria-invalid", "true")
    await expect(phone).to_have_value("<i>abc</i>")  # kept as typed, as text
    await expect(form.get_by_label("Your name")).to_have_value("Ada <b>L</b>")
    await expect(form.get_by_label("Email")).not_to_have_attribute("aria-invalid", "true")
    await alert.get_by_role("link", name="Not a phone number.").click()
    await expect(phone).to_be_focused()

    await phone.fill("")
    await form.get_by_role("button", name="Book").click()
    await expect(alert.get_by_role("listitem")).to_have_text(
        ["Give an email address or a phone number, so the provider can reach you."]
    )

    # A time outside the provider's hours (Paris 09:00-17:00), asked for by hand: refused before
    # the form is filled, with the way back to the times on offer.
    night = dt.datetime.combine(dt.date.today() + dt.timedelta(days=8), dt.time(3), dt.UTC)
    await visitor.goto(
        f"/book/{slug}/{service['id']}/details?start={night.isoformat().replace('+', '%2B')}&tz=UTC"
    )
    await expect(visitor.get_by_role("heading", level=1)).to_have_text("This time can't be booked")
    await expect(visitor.get_by_text("This time is not free. Please pick another.")).to_be_visible()
    await expect(visitor.get_by_role("form", name="Your details")).to_have_count(0)
    await visitor.get_by_role("link", name="Pick another time").click()
    await expect(visitor.get_by_role("heading", level=1)).to_contain_text("Haircut")
    for developer_text in ("Value error", "start_at", "phone:", "form:", "`"):
        await expect(visitor.get_by_text(developer_text)).to_have_count(0)
    assert await _bookings(page) == []


async def test_public_pages_ask_for_no_favicon(page: Page, new_context: Any, db: Database) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    visitor = await (await new_context()).new_page()
    # Chromium's favicon fetch is not a page request Playwright reports; its 404 shows up as a
    # console error whose location is /favicon.ico.
    failed: list[str] = []
    visitor.on("console", lambda m: failed.append(m.location.get("url", "")) if m.type == "error" else None)
    pages = [f"/book/{slug}", f"/book/{slug}/{service['id']}?tz=UTC", f"/manage/{token}", "/manage/no-such"]
    for path in pages:
        await visitor.goto(path)
        await expect(visitor.get_by_role("heading", level=1)).to_be_visible()
    # The one error expected: the unknown link's own 404.
    assert [url for url in failed if not url.endswith("/manage/no-such")] == [], failed
