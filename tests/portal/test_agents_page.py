"""The Agents page: a key is created and shown once (with a Copy button and ready commands),
listed with its last use, revoked — and then refused over REST; another person sees none of it."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, Route, expect
from sqlalchemy import text

from core.uow import Database
from tests.portal.conftest import api_as, open_from_nav, screenshot, sign_up_quickly


async def test_a_key_is_shown_once_works_and_stops_when_revoked(
    page: Page, new_context: object, live_server: str
) -> None:
    await sign_up_quickly(page, "agent")
    await open_from_nav(page, "Agents", f"{live_server}/me/agents")
    await expect(page.get_by_role("heading", name="Agents", level=1)).to_be_visible()
    await expect(page.get_by_text("You have no API keys yet.")).to_be_visible()
    # The commands name this server's MCP endpoint before any key exists.
    await expect(page.get_by_text(f"{live_server}/mcp").first).to_be_visible()
    # Until the OAuth server is there, connected apps say so instead of failing.
    apps = page.get_by_role("region", name="Connected apps")
    await expect(page.get_by_role("heading", name="Connect an agent")).to_be_visible()
    await expect(
        apps.get_by_text(re.compile("No app is connected|not available on this server"))
    ).to_be_visible()

    # By keyboard: Enter submits; the one-time key takes the focus.
    await page.get_by_label("Name").fill("build bot")
    await page.get_by_label("Name").press("Enter")
    shown = page.get_by_role("region", name="Your new API key")
    await expect(shown).to_be_focused()
    await expect(shown.get_by_role("button", name="Copy the API key")).to_be_visible()
    token = (await shown.get_by_test_id("new-key").inner_text()).strip()
    assert token.startswith("atl_")
    http_line = f"claude mcp add --transport http atlilith {live_server}/mcp"
    await expect(page.get_by_text(f"Bearer {token}")).to_contain_text(http_line)
    await expect(page.get_by_text("-- atlilith mcp")).to_contain_text(f"ATLILITH_TOKEN={token}")
    await expect(page.get_by_role("button", name="Copy the HTTP command")).to_be_visible()
    await screenshot(page, "agents")

    async with httpx.AsyncClient(base_url=live_server) as c:
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await c.get("/v1/me", headers=bearer)).status_code == 200

        # Shown once: after a reload only its prefix is left, now with its last use.
        await page.reload()
        await expect(page.get_by_role("region", name="Your new API key")).to_have_count(0)
        assert token not in await page.content()
        row = page.get_by_role("row", name=re.compile("build bot"))
        await expect(row).to_contain_text(token[:12])
        await expect(row).not_to_contain_text("never")

        # Another person sees none of it.
        other = await new_context()  # type: ignore[operator]
        page2 = await other.new_page()
        await sign_up_quickly(page2, "other")
        await page2.goto("/me/agents")
        await expect(page2.get_by_text("You have no API keys yet.")).to_be_visible()
        await expect(page2.get_by_text("build bot")).to_have_count(0)

        await row.get_by_role("button", name="Revoke build bot").press("Enter")
        await expect(row.get_by_role("button", name="Yes, revoke build bot")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(row).to_contain_text("revoked")
        refused = await c.get("/v1/me", headers=bearer)
        assert refused.status_code == 401 and refused.json()["code"] == "api_key_invalid"


async def test_in_an_org_a_key_is_bound_to_it_by_default(page: Page, live_server: str) -> None:
    await sign_up_quickly(page, "orgkey")
    org = await api_as(page, "POST", "/v1/orgs", {"slug": f"keys-{uuid.uuid4().hex[:8]}", "name": "Keys Org"})
    await page.goto(f"/o/{org['slug']}/agents")
    await expect(page.get_by_label("Bound to")).to_have_value(org["slug"])
    await page.get_by_label("Name").fill("org agent")
    await page.get_by_role("checkbox", name=re.compile(r"^\* ")).uncheck()
    await page.get_by_text("Narrow it to some features").click()
    await page.get_by_role("checkbox", name=re.compile("^bookings:read")).check()
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_role("region", name="Your new API key")).to_be_visible()
    await expect(
        page.get_by_text(f"claude mcp add --transport http atlilith-{org['slug']}").first
    ).to_be_visible()
    row = page.get_by_role("row", name=re.compile("org agent"))
    await expect(row).to_contain_text("Keys Org")
    await expect(row).to_contain_text("bookings:read")

    # A refusal is shown where it happened, with its hint.
    await page.get_by_label("Name").fill("nothing")
    await page.get_by_role("checkbox", name=re.compile("^bookings:read")).uncheck()
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_role("alert")).to_contain_text("The key was not created")


async def test_connected_apps_are_listed_and_disconnected_per_the_oauth_contract(page: Page) -> None:
    """The OAuth server's endpoints are another branch's; the page is held to their contract
    (GET /v1/oauth/connections, DELETE /v1/oauth/connections/{id}) with the browser answering."""
    connection = {
        "id": str(uuid.uuid4()),
        "client_id": "https://claude.ai/oauth/client.json",
        "client_name": "Claude Desktop",
        "context": {"kind": "org", "org": "cocotte"},
        "scopes": ["tenancy:read", "bookings:write"],
        "created_at": "2026-12-01T10:00:00Z",
        "last_used_at": None,
        "revoked_at": None,
    }
    state: dict[str, list[Any]] = {"items": [connection], "deleted": []}

    async def connections(route: Route) -> None:
        if route.request.method == "DELETE":
            state["deleted"].append(route.request.url.rsplit("/", 1)[-1])
            state["items"] = []
            await route.fulfill(json={**connection, "revoked_at": "2026-12-02T10:00:00Z"})
        else:
            await route.fulfill(json={"items": state["items"], "next_cursor": None})

    await page.route("**/v1/oauth/connections**", connections)
    await sign_up_quickly(page, "apps")
    await page.goto("/me/agents")
    apps = page.get_by_role("table", name="Connected apps")
    row = apps.get_by_role("row", name=re.compile("Claude Desktop"))
    await expect(row).to_contain_text("cocotte")
    await expect(row).to_contain_text("bookings:write")
    await expect(row).to_contain_text("never")
    # With the OAuth endpoints there, the page also offers the key-less, browser sign-in line.
    await expect(page.get_by_role("button", name="Copy the sign-in command")).to_be_visible()
    await row.get_by_role("button", name="Disconnect Claude Desktop").click()
    await page.get_by_role("button", name="Yes, disconnect").click()
    await expect(page.get_by_text("No app is connected.")).to_be_visible()
    assert state["deleted"] == [connection["id"]]


async def test_two_keys_of_one_name_have_buttons_told_apart(page: Page) -> None:
    await sign_up_quickly(page, "twins")
    made = [await api_as(page, "POST", "/v1/api-keys", {"name": "twin", "scopes": ["*"]}) for _ in range(2)]
    await page.goto("/me/agents")
    buttons = page.get_by_role("button", name=re.compile(r"^Revoke twin"))
    await expect(buttons).to_have_count(2)
    names = {await b.get_attribute("aria-label") for b in await buttons.all()}
    assert names == {f"Revoke twin (atl_{k['prefix']})" for k in made}
    # The one named is the one revoked.
    await page.get_by_role("button", name=f"Revoke twin (atl_{made[0]['prefix']})", exact=True).click()
    await page.get_by_role("button", name="Yes, revoke twin").click()
    first = page.get_by_role("row", name=re.compile(f"atl_{made[0]['prefix']}"))
    await expect(first).to_contain_text("revoked")
    await expect(page.get_by_role("row", name=re.compile(f"atl_{made[1]['prefix']}"))).not_to_contain_text(
        "revoked"
    )


async def test_admin_scopes_are_offered_to_platform_operators_only(page: Page, db: Database) -> None:
    person = await sign_up_quickly(page, "scopes")
    await page.goto("/me/agents")
    admin_boxes = page.get_by_role("checkbox", name=re.compile("^admin:"))
    await page.get_by_text("Narrow it to some features").click()
    await expect(page.get_by_role("checkbox", name=re.compile("^bookings:read"))).to_be_visible()
    await expect(admin_boxes).to_have_count(0)
    me = await api_as(page, "GET", "/v1/me")
    assert me["platform_admin"] is False
    async with db.system() as uow:
        await uow.session.execute(
            text("UPDATE platform.persons SET is_platform_admin = true WHERE slug = :s"), {"s": person.slug}
        )
    await page.reload()
    await page.get_by_text("Narrow it to some features").click()
    await expect(admin_boxes.first).to_be_visible()
    assert (await api_as(page, "GET", "/v1/me"))["platform_admin"] is True
