"""The API reference at /docs renders in a real Chromium with nothing fetched from another origin
(it works offline) and nothing refused by its strict Content-Security-Policy."""

from __future__ import annotations

import re

import httpx
from playwright.async_api import Page, expect


async def test_the_api_reference_renders_from_this_server_alone(page: Page, live_server: str) -> None:
    requested: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: console.append(m.text))
    await page.goto("/docs")
    await expect(page.get_by_role("heading", name=re.compile("^Atlilith"))).to_be_visible()
    me = page.get_by_role("button", name=re.compile(r"GET\s*\/v1\/me(\s|$)")).first
    await expect(me).to_be_visible()
    await me.click()  # an operation opens, its parameters and answers described
    await expect(page.get_by_text("Responses").first).to_be_visible()
    assert requested and all(u.startswith(live_server) or u.startswith("data:") for u in requested), requested
    assert f"{live_server}/openapi.json" in requested
    assert not [c for c in console if "Content Security Policy" in c or "Refused" in c], console

    async with httpx.AsyncClient(base_url=live_server) as c:
        shown = await c.get("/docs")
        policy = shown.headers["content-security-policy"]
        assert "script-src 'self';" in policy and "unsafe-inline" not in policy
        assert "<script>" not in shown.text  # every script is a file
        bundle = await c.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
