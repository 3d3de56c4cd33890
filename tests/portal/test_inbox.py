"""The inbox as a provider uses it: client messages arrive live and are shown as text, agent
drafts are approved (once) by a person, the agent mode switch hides the agent's draft button."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from typing import Any

from playwright.async_api import Page, Route, expect

from tests.portal.conftest import api_as, screenshot, sign_up_quickly
from tests.support.messaging import FakePeer

HOSTILE = '<script>window.pwned = 1</script><b>bold?</b> <img src=x onerror="window.pwned=2">'


async def inbound(page: Page, **fields: Any) -> dict[str, Any]:
    body = {"channel": "email", "external_id": f"<{uuid.uuid4().hex}@mail>", **fields}
    out: dict[str, Any] = (await api_as(page, "POST", "/v1/messaging/inbound", body))["results"][0]
    return out


async def test_inbound_messages_appear_live_and_client_text_stays_text(page: Page) -> None:
    await sign_up_quickly(page, "inbox")
    # The portal channel needs no delivery peer, so the reply below can be sent.
    bob = {"channel": "portal", "client_email": "bob@example.com"}
    first = await inbound(page, **bob, client_name="Bob", subject="Lesson", body="Hello!")
    await page.goto("/me/inbox")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Inbox")
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    threads = page.get_by_role("list", name="Threads")
    await expect(threads.get_by_role("link", name="Bob Lesson")).to_be_visible()
    await expect(threads.get_by_text("1 unread")).to_be_visible()

    # A new client writes while the inbox is open: it appears without a reload, within 5 s,
    # and their markup is shown literally (nothing of it runs or renders).
    await inbound(
        page, client_email="zoe@example.com", client_name="Zoe <i>x</i>", subject="Hi", body=HOSTILE
    )
    await expect(threads.get_by_text(HOSTILE)).to_be_visible(timeout=5_000)
    await expect(threads.get_by_text("Zoe <i>x</i>")).to_be_visible()
    await expect(page.locator(".thread-list b, .thread-list img, .thread-list i")).to_have_count(0)
    await screenshot(page, "inbox")

    # The thread view: messages oldest first, the client's marked as the client's.
    await threads.get_by_role("link", name="Bob Lesson").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Lesson")
    messages = page.get_by_role("list", name="Messages, oldest first")
    await expect(messages.get_by_role("article").first).to_contain_text("From the client · Bob")
    await expect(messages.get_by_text("Hello!")).to_be_visible()

    # Bob writes again into the open thread: it appears within 5 s, as text.
    await inbound(page, **bob, body=HOSTILE)
    await expect(messages.get_by_text(HOSTILE)).to_be_visible(timeout=5_000)
    await expect(messages.get_by_role("article")).to_have_count(2)
    await expect(page.locator(".messages script, .messages b, .messages img")).to_have_count(0)
    assert await page.evaluate("window.pwned") is None

    # Reply, assign to me; the inbox's "Me" filter finds it.
    await page.get_by_label("Your reply").fill("Hi Bob, Tuesday works.")
    await page.get_by_role("button", name="Send reply").click()
    await expect(messages.get_by_role("article").last).to_contain_text("Sent by you")
    await expect(messages.get_by_text("Hi Bob, Tuesday works.")).to_be_visible()
    await page.get_by_role("button", name="Assign to me").click()
    await expect(page.get_by_text("Assigned to")).to_be_visible()
    await screenshot(page, "thread")
    await page.get_by_role("link", name="← Inbox").click()
    await page.get_by_label("Assignee").select_option("me")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(threads.get_by_role("listitem")).to_have_count(1)
    await expect(threads.get_by_role("link", name="Bob Lesson")).to_be_visible()
    detail = await api_as(page, "GET", f"/v1/messaging/threads/{first['thread_id']}")
    assert detail["thread"]["assignee"] is not None


async def test_approving_a_draft_sends_once_and_agent_mode_off_hides_drafting(page: Page) -> None:
    person = await sign_up_quickly(page, "drafts")
    async with FakePeer() as peer:
        await api_as(page, "PUT", "/v1/messaging/settings", {"draft_peer_url": peer.url("/draft")})
        got = await inbound(
            page,
            channel="portal",
            client_email="ann@example.com",
            client_name="Ann",
            subject="Move?",
            body="Can we move to Tuesday?",
        )
        tid = got["thread_id"]
        key = await api_as(page, "POST", "/v1/api-keys", {"name": "helper", "scopes": ["messaging:write"]})
        r = await page.context.request.post(
            f"/v1/messaging/threads/{tid}/drafts",
            data={"body": "Tuesday at 3 works for me."},
            headers={"Authorization": f"Bearer {key['token']}"},
        )
        assert r.status == 201, await r.text()

        await page.goto(f"/me/inbox/{tid}")
        draft = page.get_by_role("article", name="Pending draft")
        await expect(draft).to_be_visible()
        await expect(draft).to_contain_text("written by an agent")
        await expect(
            page.get_by_role("radiogroup", name="Agent mode").or_(
                page.get_by_role("group", name="Agent mode")
            )
        ).to_be_visible()
        await expect(page.get_by_role("radio", name="Drafts only")).to_be_checked()
        await screenshot(page, "thread-draft")

        # Edit, then approve (clicked twice: one approval, one message).
        box = draft.get_by_label("Draft reply")
        await box.fill("Tuesday at 3 works for me. See you!")
        approve = draft.get_by_role("button", name="Approve edited draft and send")
        await approve.dblclick()
        await expect(page.get_by_role("status").filter(has_text="Draft edited and sent.")).to_be_visible()
        messages = page.get_by_role("list", name="Messages, oldest first")
        await expect(messages.get_by_text("Tuesday at 3 works for me. See you!")).to_have_count(1)
        await expect(page.get_by_role("article", name="Pending draft")).to_have_count(0)
        detail = await api_as(page, "GET", f"/v1/messaging/threads/{tid}")
        sent = [m for m in detail["messages"] if m["direction"] == "out"]
        assert [m["body"] for m in sent] == ["Tuesday at 3 works for me. See you!"]
        assert sent[0]["author"]["kind"] == "person" and detail["pending_drafts"] == []

        # A drafting peer is configured: a person may ask for a draft, which appears for approval.
        await page.get_by_label("Instructions for the draft (optional)").fill("offer Wednesday")
        await page.get_by_role("button", name="Generate a draft").click()
        await expect(page.get_by_role("article", name="Pending draft")).to_contain_text("generated by fake-1")
        await page.get_by_role("button", name="Reject draft").click()
        await page.get_by_label("Why reject it?").fill("too long")
        await page.get_by_role("button", name="Reject", exact=True).click()
        await expect(page.get_by_role("article", name="Pending draft")).to_have_count(0)

        # Agents off: the agent's drafting control disappears, and the API agrees.
        await page.get_by_role("radio", name="Off").check()
        await expect(page.get_by_role("radio", name="Off")).to_be_checked()
        await expect(page.get_by_role("button", name="Generate a draft")).to_have_count(0)
        detail = await api_as(page, "GET", f"/v1/messaging/threads/{tid}")
        assert detail["thread"]["agent_mode"] == "off"
        await page.reload()
        await expect(page.get_by_role("radio", name="Off")).to_be_checked()
        await expect(page.get_by_role("button", name="Generate a draft")).to_have_count(0)
        await page.get_by_role("radio", name="Drafts only").check()
        await expect(page.get_by_role("button", name="Generate a draft")).to_be_visible()
    assert person.slug


async def test_an_org_inbox_is_live_and_never_shows_another_tenants_messages(
    page: Page, new_context: Any
) -> None:
    owner = await sign_up_quickly(page, "orgbox")
    org = f"box-{uuid.uuid4().hex[:6]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": org, "name": "Box Studio"})
    key = await api_as(
        page, "POST", "/v1/api-keys", {"name": "mail-sync", "scopes": ["messaging:ingest"], "org": org}
    )
    other_page = await (await new_context()).new_page()
    await sign_up_quickly(other_page, "other")

    # (api_as acts in the session's last context: personal until the page switches to the org)
    await inbound(page, client_email="y@example.com", subject="Personal", body="personal, not the org's")
    await page.goto(f"/o/{org}/inbox")
    await expect(page.get_by_text("No threads here.")).to_be_visible()
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()

    # Another tenant's client writes (their personal inbox), then the org's peer delivers one.
    # Only the org's appears here.
    await inbound(other_page, client_email="x@example.com", subject="Elsewhere", body="not for this org")
    r = await page.context.request.post(
        "/v1/messaging/inbound",
        data={
            "channel": "email",
            "external_id": "<org-1@mail>",
            "client_email": "cy@example.com",
            "client_name": "Cy",
            "subject": "For the studio",
            "body": "Hello studio",
        },
        headers={"Authorization": f"Bearer {key['token']}"},
    )
    assert r.status == 200, await r.text()
    threads = page.get_by_role("list", name="Threads")
    await expect(threads.get_by_text("Hello studio")).to_be_visible(timeout=5_000)
    await expect(threads.get_by_role("listitem")).to_have_count(1)
    await expect(page.get_by_text("not for this org")).to_have_count(0)
    await expect(page.get_by_text("personal, not the org's")).to_have_count(0)

    # In an org, a thread is assigned to a member chosen by name.
    await threads.get_by_role("link", name="Cy For the studio").click()
    await page.get_by_label("Assign to", exact=True).select_option(owner.slug)
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(page.get_by_text(f"Assigned to {owner.display_name}")).to_be_visible()


async def _texts_from_27_clients(page: Page, word: str, first_number: int) -> None:
    """27 SMS threads ("{word} 0" ... "{word} 26"), one more than a page and a "load more"."""
    batch = [
        {"channel": "sms", "external_id": f"{word}{i}", "client_phone": f"+1415555{first_number + i}"}
        | {"body": f"{word} {i}"}
        for i in range(27)
    ]
    await api_as(page, "POST", "/v1/messaging/inbound", {"messages": batch})


async def test_load_more_follows_the_cursor_and_filters_narrow_the_list(page: Page) -> None:
    await sign_up_quickly(page, "many")
    await _texts_from_27_clients(page, "note", 2000)
    await page.goto("/me/inbox")
    threads = page.get_by_role("list", name="Threads")
    await expect(threads.get_by_role("listitem")).to_have_count(25)
    await page.get_by_role("button", name="Load more threads").click()
    await expect(threads.get_by_role("listitem")).to_have_count(27)
    await expect(page.get_by_role("button", name="Load more threads")).to_have_count(0)
    await expect(
        page.get_by_text("27 of 27 threads shown · 27 unread messages in 27 threads")
    ).to_be_visible()

    await page.get_by_label("Search").fill("note 13")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(threads.get_by_role("listitem")).to_have_count(1)
    await page.get_by_role("button", name="Clear").click()
    await page.get_by_label("Channel").select_option("email")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_text("No threads here.")).to_be_visible()
    await expect(page.get_by_text("Clear the filters to see every thread.")).to_be_visible()


async def test_the_unread_summary_counts_the_threads_not_loaded_yet(page: Page) -> None:
    await sign_up_quickly(page, "unread")
    now = dt.datetime.now(dt.UTC)

    def sms(i: int, body: str, ago: dt.timedelta) -> dict[str, Any]:
        phone = f"+1415555{3000 + i}"
        return {
            "channel": "sms",
            "external_id": uuid.uuid4().hex,
            "client_phone": phone,
            "body": body,
            "occurred_at": (now - ago).isoformat(),
        }

    # Three older threads are unread (one with two messages); 26 newer ones have been read, so
    # the first page (25 threads) holds none of the unread ones.
    older = [sms(i, f"old {i}", dt.timedelta(days=2)) for i in range(3)]
    older.append(sms(0, "old 0, again", dt.timedelta(days=2) - dt.timedelta(minutes=5)))
    await api_as(page, "POST", "/v1/messaging/inbound", {"messages": older})
    newer = [sms(100 + i, f"new {i}", dt.timedelta(hours=1)) for i in range(26)]
    done = await api_as(page, "POST", "/v1/messaging/inbound", {"messages": newer})
    for result in done["results"]:
        await api_as(page, "POST", f"/v1/messaging/threads/{result['thread_id']}/read", {})

    await page.goto("/me/inbox")
    threads = page.get_by_role("list", name="Threads")
    await expect(threads.get_by_role("listitem")).to_have_count(25)
    await expect(threads.get_by_text(re.compile(r"^\d+ unread$"))).to_have_count(0)
    await expect(page.get_by_text("25 of 29 threads shown · 4 unread messages in 3 threads")).to_be_visible()

    # Loading more changes what is shown, not the count; filtered, the count follows the filters.
    await page.get_by_role("button", name="Load more threads").click()
    await expect(threads.get_by_role("listitem")).to_have_count(29)
    await expect(page.get_by_text("29 of 29 threads shown · 4 unread messages in 3 threads")).to_be_visible()
    await page.get_by_label("Search").fill("new")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_text("25 of 26 threads shown · nothing unread")).to_be_visible()


async def test_a_slow_load_more_never_mixes_into_other_filters(page: Page) -> None:
    await sign_up_quickly(page, "slow")
    await _texts_from_27_clients(page, "memo", 4000)
    release = asyncio.Event()
    held: list[str] = []

    async def slow(route: Route) -> None:
        held.append(route.request.url)
        await release.wait()
        await route.continue_()

    await page.route(re.compile(r"/v1/messaging/threads\?.*cursor="), slow)
    await page.goto("/me/inbox")
    threads = page.get_by_role("list", name="Threads")
    await expect(threads.get_by_role("listitem")).to_have_count(25)
    await page.get_by_role("button", name="Load more threads").click()
    async with asyncio.timeout(10):
        while not held:
            await asyncio.sleep(0.05)
    # The person narrows the list while the next page is still on its way.
    await page.get_by_label("Search").fill("memo 13")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(threads.get_by_role("listitem")).to_have_count(1)
    async with page.expect_response(re.compile(r"cursor=")):
        release.set()
    await page.wait_for_timeout(300)  # time for a stale answer to land, had it been kept
    await expect(threads.get_by_role("listitem")).to_have_count(1)
    await expect(page.get_by_text("1 of 1 thread shown · 1 unread message in 1 thread")).to_be_visible()
