"""A reply sent, then Back and Send again with the text the browser restored, makes one message:
the conversation page is never cached, so the form comes back with a fresh key and only the
words tell the resend apart. The page asks ("You already sent this at … — send it again?")
rather than saying "Reply sent." for nothing: confirmed, the same words are sent. The same
words after the provider answers are a new message."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect

from tests.portal.conftest import api_as
from tests.portal.test_public_zone_as_written import conversation_link


async def _inbound(page: Page, thread_id: str) -> list[str]:
    detail = await api_as(page, "GET", f"/v1/messaging/threads/{thread_id}")
    return [m["untrusted_body"] for m in detail["messages"] if m["direction"] == "in"]


async def test_back_and_send_again_makes_one_message(page: Page, new_context: Any) -> None:
    thread_id, link = await conversation_link(page, "resend")
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/c/{link['token']}")
    form = visitor.get_by_role("form", name="Reply")
    await form.get_by_label("Your reply").fill("See you Thursday")
    await form.get_by_role("button", name="Send reply").click()
    await expect(visitor.get_by_role("status")).to_have_text("Reply sent.")

    await visitor.go_back()
    await form.get_by_label("Your reply").fill("See you Thursday")  # as the browser restores it
    await form.get_by_role("button", name="Send reply").click()
    again = visitor.get_by_role("form", name="Send it again")
    await expect(again.get_by_role("status")).to_have_text(
        re.compile(r"^You already sent this at .+ — send it again\?$")
    )
    assert await _inbound(page, thread_id) == ["See you Thursday"]
    # Back and Send again from the question: still asked, still one message.
    await visitor.go_back()
    await form.get_by_label("Your reply").fill("See you Thursday")
    await form.get_by_role("button", name="Send reply").click()
    await expect(again.get_by_role("status")).to_contain_text("You already sent this at")
    assert await _inbound(page, thread_id) == ["See you Thursday"]

    # Meant: confirmed, it is sent.
    await again.get_by_role("button", name="Send it again").click()
    await expect(visitor.get_by_role("status")).to_have_text("Reply sent.")
    assert await _inbound(page, thread_id) == ["See you Thursday", "See you Thursday"]

    # After the provider answers, the same words are a new reply.
    await api_as(page, "POST", f"/v1/messaging/threads/{thread_id}/messages", {"body": "Thursday at 10?"})
    await visitor.reload()
    await form.get_by_label("Your reply").fill("See you Thursday")
    await form.get_by_role("button", name="Send reply").click()
    await expect(visitor.get_by_role("status")).to_have_text("Reply sent.")
    assert await _inbound(page, thread_id) == ["See you Thursday"] * 3
