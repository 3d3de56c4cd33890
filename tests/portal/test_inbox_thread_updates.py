"""An open thread as it changes under the provider: a long thread keeps every message it has
shown when new ones arrive, and the triage fields keep what is being typed in them."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from playwright.async_api import Page, Route, expect

from tests.portal.conftest import api_as, sign_up_quickly

ANN = {"channel": "portal", "client_email": "ann@example.com", "client_name": "Ann"}


async def write(page: Page, bodies: list[str]) -> str:
    """Ann writes `bodies` (in batches the API takes); the thread's id."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(bodies), 50):
        batch = [
            {**ANN, "subject": "Long", "external_id": f"<{uuid.uuid4().hex}@mail>", "body": body}
            for body in bodies[start : start + 50]
        ]
        results += (await api_as(page, "POST", "/v1/messaging/inbound", {"messages": batch}))["results"]
    return str(results[0]["thread_id"])


async def test_a_long_thread_keeps_every_message_loaded_when_new_ones_arrive(page: Page) -> None:
    await sign_up_quickly(page, "long")
    tid = await write(page, [f"note {i}" for i in range(111)])
    await page.goto(f"/me/inbox/{tid}")
    messages = page.get_by_role("list", name="Messages, oldest first").get_by_role("article")
    await expect(messages).to_have_count(50)

    # The first try fails: it says so, busy while it runs, and the button works again after.
    asked = asyncio.Event()
    answer = asyncio.Event()

    async def fail_once(route: Route) -> None:
        asked.set()
        await answer.wait()
        await route.fulfill(status=503, json={"title": "Unavailable", "status": 503, "code": "busy"})

    older = f"**/v1/messaging/threads/{tid}?*cursor=*"
    await page.route(older, fail_once)
    await page.get_by_role("button", name="Load older messages").click()
    await asked.wait()
    await expect(page.get_by_role("button", name="Loading older messages…")).to_be_disabled()
    answer.set()
    await expect(page.get_by_role("alert")).to_contain_text("Could not load older messages")
    await page.unroute(older)

    await page.get_by_role("button", name="Load older messages").click()
    await expect(messages).to_have_count(100)
    await expect(page.get_by_role("alert")).to_have_count(0)
    await page.get_by_role("button", name="Load older messages").click()
    await expect(messages).to_have_count(111)
    await expect(page.get_by_role("button", name="Load older messages")).to_have_count(0)

    # Each new message pushes one off the newest page the thread re-reads: none may go.
    await page.get_by_label("Your reply").fill("A reply at the end")
    await page.get_by_role("button", name="Send reply").click()
    await expect(messages).to_have_count(112)
    await write(page, ["Ann again"])
    await expect(messages).to_have_count(113)
    texts = [await m.locator(".client-text, .our-text").inner_text() for m in await messages.all()]
    assert texts == [f"note {i}" for i in range(111)] + ["A reply at the end", "Ann again"]


async def test_triage_fields_keep_what_is_typed_while_messages_arrive(page: Page) -> None:
    await sign_up_quickly(page, "triage")
    tid = await write(page, ["Hello"])
    await page.goto(f"/me/inbox/{tid}")
    messages = page.get_by_role("list", name="Messages, oldest first").get_by_role("article")
    await expect(messages).to_have_count(1)

    labels = page.get_by_role("textbox", name="Labels")
    snooze = page.get_by_label("Snooze until")
    await labels.fill("vip, tuesday")
    await snooze.fill("2031-03-04T10:30")
    await page.get_by_role("combobox", name="Status").select_option("pending")
    await write(page, ["Are you there?"])
    await expect(messages).to_have_count(2)
    await expect(labels).to_have_value("vip, tuesday")
    await expect(snooze).to_have_value("2031-03-04T10:30")
    await expect(page.get_by_role("combobox", name="Status")).to_have_value("pending")

    # Saved, the field shows the thread's labels (sorted by the API), and still after the next
    # message; the snooze not yet saved is still there.
    await page.get_by_role("button", name="Save labels").click()
    await expect(page.locator(".thread-facts .label")).to_have_text(["tuesday", "vip"])
    await expect(labels).to_have_value("tuesday, vip")
    await write(page, ["Hello?"])
    await expect(messages).to_have_count(3)
    await expect(labels).to_have_value("tuesday, vip")
    await expect(snooze).to_have_value("2031-03-04T10:30")
    detail = await api_as(page, "GET", f"/v1/messaging/threads/{tid}")
    assert detail["thread"]["labels"] == ["tuesday", "vip"]
