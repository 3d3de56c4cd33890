"""The inbox counted exactly: `GET /v1/messaging/threads/counts` and `messaging_threads_count`
agree with what the list returns under every filter, count only the context asked for, and
never another person's threads."""

from __future__ import annotations

import json
from typing import Any

import httpx
from mcp import Client

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import make_org, signup
from tests.support.messaging import inbound
from tests.support.registry import install


async def _listed(mc: httpx.AsyncClient, h: dict[str, str], params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every thread the list returns under `params`, page after page (two a page, to page)."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await mc.get(
            "/v1/messaging/threads", params={**params, "limit": 2, "cursor": cursor}, headers=h
        )
        assert page.status_code == 200, page.text
        found += page.json()["items"]
        if not (cursor := page.json()["next_cursor"]):
            return found


async def test_counts_agree_with_the_list_under_every_filter(mc: httpx.AsyncClient) -> None:
    owner = await signup(mc)
    h = owner.h()
    for i, (who, words) in enumerate(
        [("ada", "Lesson on Tuesday?"), ("ada", "Or Wednesday"), ("bob", "Invoice"), ("cy", "Tuesday again")]
    ):
        await inbound(
            mc, h, external_id=f"c{i}", client_email=f"{who}@example.com", subject=words, body=words
        )
    await inbound(mc, h, channel="sms", external_id="s1", client_phone="+14155552671", body="Tuesday?")
    threads = (await mc.get("/v1/messaging/threads", headers=h)).json()["items"]
    bob = next(t for t in threads if t["client"]["email"] == "bob@example.com")
    assert (await mc.post(f"/v1/messaging/threads/{bob['id']}/read", json={}, headers=h)).status_code == 200
    cy = next(t for t in threads if t["client"]["email"] == "cy@example.com")
    closed = await mc.patch(f"/v1/messaging/threads/{cy['id']}", json={"status": "closed"}, headers=h)
    assert closed.status_code == 200, closed.text

    everything = await mc.get("/v1/messaging/threads/counts", headers=h)
    assert everything.json() == {"threads": 4, "unread_threads": 3, "unread_messages": 4}, everything.text
    for params in (
        {},
        {"unread": "true"},
        {"unread": "false"},
        {"status": "open"},
        {"status": "closed"},
        {"q": "tuesday"},
        {"q": "tuesday", "unread": "true", "status": "open"},
        {"channel": "sms"},
        {"assignee": "none"},
        {"assignee": "me"},
        {"label": "nothing-has-it"},
    ):
        listed = await _listed(mc, h, params)
        counted = (await mc.get("/v1/messaging/threads/counts", params=params, headers=h)).json()
        assert counted == {
            "threads": len(listed),
            "unread_threads": sum(1 for t in listed if t["unread_count"]),
            "unread_messages": sum(t["unread_count"] for t in listed),
        }, params

    # A cursor of this list is this list's: another list refuses it rather than reading it
    # as a position of its own (the bookings' start and id have the same types of values).
    cursor = (await mc.get("/v1/messaging/threads", params={"limit": 1}, headers=h)).json()["next_cursor"]
    for other in ("/v1/bookings", "/v1/clients"):
        foreign = await mc.get(other, params={"cursor": cursor}, headers=h)
        assert foreign.status_code == 422 and foreign.json()["code"] == "invalid_cursor", (
            other,
            foreign.text,
        )
    # The same rules refuse the same mistakes; a handle no one has is not "nobody".
    for path in ("/v1/messaging/threads", "/v1/messaging/threads/counts"):
        typo = await mc.get(path, params={"assignee": "nobody-xyz"}, headers=h)
        assert typo.status_code == 422 and typo.json()["code"] == "unknown_assignee", typo.text
    bad = await mc.get("/v1/messaging/threads/counts", params={"q": "!!!"}, headers=h)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_query"
    wrong = await mc.get("/v1/messaging/threads/counts", params={"status": "lost"}, headers=h)
    assert wrong.status_code == 422 and "lost" not in wrong.json().get("code", "")


async def test_counts_stay_in_their_context(mc: httpx.AsyncClient, mdb: Database) -> None:
    owner = await signup(mc)
    org = await make_org(mc, owner)
    await inbound(mc, owner.h(), external_id="p1", client_email="mine@example.com")
    for i in range(2):
        await inbound(mc, owner.h(org=org), external_id=f"o{i}", client_email=f"org{i}@example.com")
    other = await signup(mc)
    counts = "/v1/messaging/threads/counts"
    assert (await mc.get(counts, headers=owner.h())).json()["threads"] == 1
    assert (await mc.get(counts, headers=owner.h(org=org))).json() == {
        "threads": 2,
        "unread_threads": 2,
        "unread_messages": 2,
    }
    assert (await mc.get(counts, headers=other.h())).json()["threads"] == 0
    refused = await mc.get(counts, headers=other.h(org=org))
    assert refused.status_code == 403
    assert (await mc.get(counts)).status_code == 401

    # The agent's door answers the same, in the context it names.
    await install(mc, owner, "messaging")
    await install(mc, owner, "messaging", org=org)
    server = build_server(mdb, static_token=owner.token, toolset_names=["messaging"])
    async with Client(server) as c:
        personal = await c.call_tool("messaging_threads_count", {})
        in_org = await c.call_tool("messaging_threads_count", {"org": org, "unread": True})
    assert not personal.is_error and not in_org.is_error
    assert personal.structured_content == {"threads": 1, "unread_threads": 1, "unread_messages": 1}
    assert json.loads(in_org.content[0].text) == {"threads": 2, "unread_threads": 2, "unread_messages": 2}  # type: ignore[union-attr]
