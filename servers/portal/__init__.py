"""The provider portal: a static browser app (Preact + htm, no build step) served at `/`.

It is a client of the public `/v1` REST API and nothing else: this module only serves files.
Every path the app routes on the client answers the same HTML shell; `/assets/...` serves the
modules. Every answer carries a strict Content-Security-Policy (no inline script or style).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import Settings

__all__ = ["CSP", "PUBLIC_PREFIXES", "SHELL_PATHS", "STATIC", "mount", "shell", "wants_a_page"]

STATIC = Path(__file__).resolve().parent / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}

# Paths the browser app routes itself; each answers index.html.
SHELL_PATHS = (
    "/",
    "/signin",
    "/signup",
    "/invitations",
    "/oauth/consent",
    "/me",
    "/me/{path:path}",
    "/o/{org}",
    "/o/{org}/{path:path}",
)

# Module scripts are refused under nosniff unless served as JavaScript.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


class SecurityHeaders:
    """Adds the portal's headers to every response of the wrapped app. Assets revalidate on
    each load (ETag), so a deploy is picked up at once without versioned file names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                headers.append((b"cache-control", b"no-cache"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _shell() -> FileResponse:
    return shell()


def shell(status: int = 200) -> FileResponse:
    """The app's HTML shell; with 404, for a page nobody serves, which the app then shows as
    "Page not found" (it routes on the client and knows no such page either)."""
    return FileResponse(
        STATIC / "index.html",
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers=SECURITY_HEADERS,
    )


# The clients' pages (servers.public) answer their own "not found", in their own look.
PUBLIC_PREFIXES = ("/book/", "/manage/", "/c/", "/site/", "/public-assets/")


def wants_a_page(method: str, path: str, accept: str) -> bool:
    """A browser navigating to a page of the portal (not the API, MCP, a probe, or a client's
    page)."""
    if method != "GET" or "text/html" not in accept:
        return False
    return not path.startswith(("/v1/", "/mcp", "/health", *PUBLIC_PREFIXES))


def mount(app: FastAPI, settings: Settings) -> None:
    """Serve the portal; call after the API routers and MCP routes so none of them is shadowed."""
    del settings  # nothing configurable yet; kept so callers need not change when it is
    app.mount("/assets", SecurityHeaders(StaticFiles(directory=STATIC)), name="portal-assets")
    for path in SHELL_PATHS:
        app.add_api_route(path, _shell, methods=["GET"], include_in_schema=False)
