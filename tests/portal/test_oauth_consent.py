"""An MCP host signs in through the portal: the official MCP Python client's OAuth support
discovers our authorization server, registers, and sends the person's browser (a real
Chromium) to sign in and consent, choosing an org; its tool calls then act in that org, until
the person disconnects it."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from playwright.async_api import Page, Route, expect
from pydantic import AnyUrl

from tests.portal.conftest import new_person, screenshot, sign_up_over_api


class MemoryStorage:
    """Where an MCP host keeps its registration and tokens (here: for one test)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _person_with_org(live_server: str) -> tuple[Any, str, str]:
    person = new_person("mcp")
    org = f"org-{person.slug[-8:]}"
    token = await sign_up_over_api(live_server, person)
    async with httpx.AsyncClient(base_url=live_server) as c:
        made = await c.post(
            "/v1/orgs",
            json={"slug": org, "name": "Studio " + org[-4:]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert made.status_code == 201, made.text
    return person, org, token


async def test_an_mcp_host_signs_in_through_the_portal_and_acts_in_the_chosen_org(
    page: Page, live_server: str
) -> None:
    person, org, person_token = await _person_with_org(live_server)
    callback = f"http://127.0.0.1:{_free_port()}/callback"
    returned: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def host_callback_page(route: Route) -> None:
        # The MCP host's local callback server: it receives the browser with the answer.
        if not returned.done():
            returned.set_result(route.request.url)
        await route.fulfill(status=200, content_type="text/html", body="<p>You can close this window.</p>")

    await page.route(f"{callback}**", host_callback_page)

    async def redirect_handler(authorization_url: str) -> None:
        """The person's browser: opens the authorization URL, signs in, consents in the org."""
        await page.goto(authorization_url)
        # Signed out: the portal's sign-in page, which leads back to the consent page.
        await expect(page).to_have_url(re.compile(r"/signin\?next=%2Foauth%2Fconsent%3Frequest%3D"))
        await page.get_by_label("Email or handle").fill(person.slug)
        await page.get_by_label("Password").fill(person.password)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text("Connect Atlilith test agent?")
        await expect(page.get_by_text("127.0.0.1:", exact=False).first).to_be_visible()
        await page.get_by_role("radio", name="Studio").check()
        await screenshot(page, "consent")
        await page.get_by_role("button", name="Approve").click()

    async def callback_handler() -> AuthorizationCodeResult:
        url = await asyncio.wait_for(returned, 15)
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        return AuthorizationCodeResult(code=q["code"], state=q.get("state"), iss=q.get("iss"))

    storage = MemoryStorage()
    oauth = OAuthClientProvider(
        server_url=f"{live_server}/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="Atlilith test agent",
            redirect_uris=[AnyUrl(callback)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
    )
    async with (
        httpx2.AsyncClient(auth=oauth, timeout=30) as http,
        Client(streamable_http_client(f"{live_server}/mcp", http_client=http)) as mcp,
    ):
        me = await mcp.call_tool("whoami", {})
        assert not me.is_error, me.content
        assert me.structured_content["context"]["kind"] == "org"
        assert me.structured_content["context"]["org"]["slug"] == org
        assert me.structured_content["credential"]["kind"] == "oauth"
        assert me.structured_content["person"]["slug"] == person.slug

    assert storage.tokens is not None
    access = storage.tokens.access_token
    rpc = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Authorization": f"Bearer {access}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=live_server) as c:
        person_h = {"Authorization": f"Bearer {person_token}"}
        connections = (await c.get("/v1/oauth/connections", headers=person_h)).json()["items"]
        assert [(x["client_name"], x["context"]["org"]) for x in connections] == [
            ("Atlilith test agent", org)
        ]
        assert (await c.post("/mcp", json=rpc, headers=headers)).status_code != 401
        # The person finds the app on the Agents page and disconnects it there.
        await page.goto(f"{live_server}/me/agents")
        apps = page.get_by_role("table", name="Connected apps")
        await expect(apps.get_by_role("cell", name="Atlilith test agent", exact=True)).to_be_visible()
        await apps.get_by_role("button", name="Disconnect Atlilith test agent").click()
        await page.get_by_role("button", name="Yes, disconnect").click()
        await expect(page.get_by_role("table", name="Connected apps")).to_have_count(0)
        # Effective on the host's next call.
        assert (await c.post("/mcp", json=rpc, headers=headers)).status_code == 401
        assert (await c.get("/v1/oauth/connections", headers=person_h)).json()["items"] == []
