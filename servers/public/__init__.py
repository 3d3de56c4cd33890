"""The public pages: where a provider's clients book and manage a booking without an account,
and where a brand's site lives.

A door into core like REST (`core.bookings.public`, `core.bookings.manage`,
`core.bookings.sites`), rendered on the server with Jinja2 (autoescaped: client text is always
text) so the first paint is fast and every page works without JavaScript; the one script only
picks the visitor's time zone.

Public means hostile (docs/public-pages.md): forms carry a CSRF token bound to a cookie, a
honeypot field and an optional challenge hook; form posts count against the strict per-address
limit (servers.ratelimit) and each booking page against its own limit; unknown slugs, services
and tokens all answer the same 404; manage pages are `noindex` and never cached.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from core.bookings.sites import brand_for_host
from core.config import Settings
from core.uow import Database
from servers.public.pages import routes
from servers.public.render import SecurityHeaders

__all__ = ["BrandHosts", "mount"]

STATIC = Path(__file__).resolve().parent / "static"


class BrandHosts:
    """`/` on a brand's own domain is that brand's site (deployments/<domain>/ routes the
    domain here); every other path and host passes through unchanged."""

    def __init__(self, app: ASGIApp, *, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            host = dict(scope.get("headers", [])).get(b"host", b"").decode("latin-1").rsplit(":", 1)[0]
            if host and (brand := await brand_for_host(self.db, host)):
                scope = {**scope, "path": f"/site/{brand}", "raw_path": f"/site/{brand}".encode()}
        await self.app(scope, receive, send)


def mount(app: FastAPI, settings: Settings) -> None:
    del settings
    app.mount("/public-assets", SecurityHeaders(StaticFiles(directory=STATIC)), name="public-assets")
    app.router.routes.extend(routes())
    app.add_middleware(BrandHosts, db=app.state.db)
