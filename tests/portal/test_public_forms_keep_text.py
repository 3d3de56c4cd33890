"""What a client typed on a public page survives a refusal, with the reason said: a reply with a
pasted control character comes back in the box with "remove the control characters", not an
empty box and a wrong word about length. And the browser's length limits on every public form
are the ones the server enforces, so a visitor is never stopped by one and refused by the other."""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.async_api import Page, expect

from core.bookings.public import PublicBookIn
from core.bookings.schemas.manage import ManageCancelIn
from core.messaging.conversation import ReplyIn
from core.uow import Database
from tests.portal.conftest import api_as
from tests.portal.test_public_pages import _managed_booking, _provider
from tests.portal.test_public_zone_as_written import conversation_link


def _max_length(model: Any, name: str) -> int:
    field = model.model_json_schema()["properties"][name]
    bounded = [field, *field.get("anyOf", [])]
    return int(next(f["maxLength"] for f in bounded if "maxLength" in f))


def _limits(html: str) -> dict[str, int]:
    return {
        m.group("name"): int(m.group("max"))
        for m in re.finditer(
            r'<(?:input|textarea)[^>]*\bname="(?P<name>\w+)"[^>]*\bmaxlength="(?P<max>\d+)"', html
        )
    }


async def test_a_refused_reply_keeps_the_text_and_says_why(page: Page, new_context: Any) -> None:
    thread_id, link = await conversation_link(page, "keeptext")
    visitor = await (await new_context()).new_page()
    await visitor.goto(f"/c/{link['token']}")
    assert _limits(await visitor.content()) == {"body": _max_length(ReplyIn, "body")}
    reply = visitor.get_by_role("form", name="Reply").get_by_label("Your reply")
    typed = "Thursday works \x01 for me, <b>thanks</b>"
    await reply.fill(typed)
    await visitor.get_by_role("button", name="Send reply").click()
    await expect(visitor.get_by_role("alert")).to_have_text(
        "Remove the invisible control characters from this text."
    )
    await expect(reply).to_have_value(typed)
    await expect(reply).to_have_attribute("aria-invalid", "true")
    detail = await api_as(page, "GET", f"/v1/messaging/threads/{thread_id}")
    assert not [m for m in detail["messages"] if m["direction"] == "in"]  # nothing was sent
    await reply.fill("Thursday works for me")
    await visitor.get_by_role("button", name="Send reply").click()
    await expect(visitor.get_by_role("status")).to_have_text("Reply sent.")


async def test_public_forms_limit_lengths_as_the_server_does(
    page: Page, live_server: str, db: Database
) -> None:
    slug, service = await _provider(page)
    token = await _managed_booking(db, slug, service)
    async with httpx.AsyncClient(base_url=live_server) as http:
        times = (await http.get(f"/book/{slug}/{service['id']}", params={"tz": "UTC"})).text
        start = re.search(r'/details\?start=([^&"]+)', times)
        assert start
        form = (await http.get(f"/book/{slug}/{service['id']}/details?start={start.group(1)}&tz=UTC")).text
        manage = (await http.get(f"/manage/{token}")).text
    assert _limits(form) == {n: _max_length(PublicBookIn, n) for n in ("name", "email", "phone", "notes")}
    assert _limits(manage) == {"reason": _max_length(ManageCancelIn, "reason")}
