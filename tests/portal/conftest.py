"""Browser tests of the portal: a live server (uvicorn in a background thread, on a free port,
against the session's test database) and one headless Chromium per test session; each test
gets fresh browser contexts (isolated cookie jars = different people)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
# The pictures in docs/portal.md are taken by these tests: `ATLILITH_SCREENSHOTS=docs ./run test
# tests/portal` refreshes them; an ordinary run keeps its pictures out of the working tree.
SHOTS = (
    ROOT / "docs" / "portal"
    if os.environ.get("ATLILITH_SCREENSHOTS") == "docs"
    else ROOT / ".atlilith" / "screenshots"
)

INSTALL_HINT = (
    "the portal's browser tests need Chromium: `apt-get update && apt-get install -y chromium` "
    "(or `.venv/bin/playwright install chromium` where downloads work)"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The whole app served on 127.0.0.1:<free port>; its own event loop and engine (a
    database engine cannot cross event loops), the same test database as every other test."""
    from servers.app import create_app

    port = _free_port()
    # Contexts may name peers on 127.0.0.1 (the inbox tests run a fake drafting peer there).
    live = settings.model_copy(update={"port": port, "messaging_peer_allowed_hosts": ["127.0.0.1:*"]})
    app = create_app(live, run_relay=False)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="portal-live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the session. No browser = the run FAILS (never skips)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    async with async_playwright() as p:
        try:
            launched = await p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:
            pytest.fail(f"no usable Chromium ({exc.__class__.__name__}): {INSTALL_HINT}", pytrace=False)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def new_context(browser: Browser, live_server: str) -> AsyncIterator[Any]:
    """A factory of isolated browser contexts (one per person), closed after the test."""
    made: list[BrowserContext] = []

    async def make(**options: Any) -> BrowserContext:
        """`options`: more of Playwright's context options (a `timezone_id`, a `locale`)."""
        ctx = await browser.new_context(
            base_url=live_server, viewport={"width": 1200, "height": 800}, **options
        )
        ctx.set_default_timeout(5_000)
        made.append(ctx)
        return ctx

    yield make
    for ctx in made:
        await ctx.close()


@pytest.fixture
async def page(new_context: Any) -> Page:
    ctx: BrowserContext = await new_context()
    return await ctx.new_page()


@dataclass
class Person:
    slug: str
    email: str
    password: str
    display_name: str

    def signup_body(self) -> dict[str, Any]:
        """The body of POST /v1/auth/signup for this person."""
        return {
            "email": self.email,
            "password": self.password,
            "slug": self.slug,
            "display_name": self.display_name,
        }


def new_person(prefix: str = "u") -> Person:
    slug = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return Person(slug, f"{slug}@example.com", "pw-" + secrets.token_hex(8), f"{prefix.title()} {slug[-4:]}")


async def sign_up_quickly(page: Page, prefix: str = "u") -> Person:
    """A new person signed in in this page's browser context, without the form: the context's
    request API shares the browser's cookie jar, so the session cookie lands where the app
    finds it. Then the app is opened on the personal dashboard."""
    person = new_person(prefix)
    r = await page.context.request.post(
        "/v1/auth/signup",
        data={**person.signup_body(), "refresh_cookie": True},
    )
    assert r.status == 201, await r.text()
    await page.goto("/me")
    await page.get_by_role("heading", level=1).wait_for()
    return person


async def sign_up_over_api(live_server: str, person: Person) -> str:
    """`person` signed up over REST, outside any browser; their access token."""
    async with httpx.AsyncClient(base_url=live_server) as c:
        r = await c.post("/v1/auth/signup", json=person.signup_body())
    assert r.status_code == 201, r.text
    return str(r.json()["access_token"])


async def open_from_nav(page: Page, link: str, url: str | None = None) -> None:
    """Follow `link` of the app's page navigation; with `url`, check where it led."""
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name=link).click()
    if url is not None:
        await expect(page).to_have_url(url)


async def api_as(page: Page, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the REST API as the person signed in in this page's context (cookie refresh)."""
    csrf = next(c["value"] for c in await page.context.cookies() if c["name"] == "atlilith_csrf")
    auth = await page.context.request.post("/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert auth.status == 200, await auth.text()
    token = (await auth.json())["access_token"]
    r = await page.context.request.fetch(
        path, method=method, data=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.ok, f"{method} {path}: {r.status} {await r.text()}"
    return await r.json() if r.status != 204 else None


async def join_as(owner_page: Page, member_page: Page, org: str, person: str, role: str = "member") -> None:
    """The person signed in on `member_page` joins `org`: invited by the one on `owner_page`,
    they accept (nobody joins an org otherwise)."""
    invited = await api_as(
        owner_page, "POST", f"/v1/orgs/{org}/invitations", {"person": person, "role": role}
    )
    await api_as(member_page, "POST", f"/v1/invitations/{invited['id']}/accept")


async def screenshot(page: Page, name: str) -> None:
    """Keep a picture of the page for docs/portal.md, once nothing on it is still loading."""
    await expect(page.locator(".loading")).to_have_count(0)
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
