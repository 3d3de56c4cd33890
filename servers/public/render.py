"""Rendering the public pages: autoescaped templates, strict headers, the error pages."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import DomainError
from servers.public.zones import clock

__all__ = [
    "CSRF_COOKIE",
    "SecurityHeaders",
    "csrf_token",
    "error_page",
    "not_found",
    "render",
    "secure_cookie",
    "too_many",
    "when",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# No inline script or style anywhere; forms post to this origin only.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
CSRF_COOKIE = "atl_form"


class SecurityHeaders:
    """The public pages' headers on the static assets as well."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.encode(), v.encode()) for k, v in HEADERS.items()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# Plain-http development on this machine, where a browser would drop a Secure cookie.
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def secure_cookie(request: Request) -> bool:
    """Whether a cookie must be `Secure`: everywhere but plain http on this machine. Behind a
    proxy the app speaks plain http (uvicorn runs with `proxy_headers=False`, so no
    forwarded scheme is believed): the scheme alone would never mark a cookie Secure there."""
    if request.url.scheme == "https":
        return True
    host = urlsplit(f"//{request.headers.get('host', '')}").hostname or ""
    return host.lower() not in _LOCAL_HOSTS


def csrf_token(request: Request) -> str:
    """The visitor's form token: the cookie's value, or a new one `render` sets as the cookie."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) < 32:
        token = getattr(request.state, "new_csrf", None) or secrets.token_urlsafe(32)
        request.state.new_csrf = token
    return token


def render(
    request: Request, template: str, *, status: int = 200, private: bool = False, **context: Any
) -> HTMLResponse:
    """A page. `private` pages (a booking's own) are kept out of search engines and caches."""
    context.setdefault("site_name", "Atlilith")
    context.setdefault("noindex", private)
    body = ENV.get_template(template).render(**context)
    response = HTMLResponse(body, status_code=status, headers=HEADERS)
    response.headers["cache-control"] = "no-store" if private else "no-cache"
    if private:
        response.headers["x-robots-tag"] = "noindex, nofollow"
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response


def not_found(request: Request) -> HTMLResponse:
    """One answer for every unknown slug, service and token: nothing enumerates."""
    return render(
        request,
        "message.html",
        status=404,
        private=True,
        title="Not found",
        heading="Nothing here",
        message="This page does not exist, or the link is no longer valid. Check the address, or ask "
        "the provider for a new link.",
    )


def _about(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds" if seconds != 1 else "1 second"
    minutes = round(seconds / 60)
    return f"{minutes} minutes" if minutes < 90 else f"{round(minutes / 60)} hours"


# What a visitor is told when a limit refuses them, by the policy that did (core.ratelimit).
_BUSY = {
    "target": "Many bookings were made on this page in a short time, so it takes no more for now.",
    "public": "Many forms were sent from your connection in a short time.",
}
_BUSY_OTHERWISE = "Many pages were asked for from your connection in a short time."


def too_many(request: Request, error: DomainError) -> Response:
    """A rate limit's refusal, for a person: what happened and how long to wait, in words, with
    the `Retry-After` a program reads (the developer's hint is for the REST door)."""
    wait = max(1, int(error.extra.get("retry_after", 60)))
    said = _BUSY.get(str(error.extra.get("policy")), _BUSY_OTHERWISE)
    response = render(
        request,
        "message.html",
        status=429,
        private=True,
        title="Busy right now",
        heading="Please try again in a moment",
        message=f"{said} Please try again in about {_about(wait)}.",
    )
    response.headers["retry-after"] = str(wait)
    return response


def error_page(request: Request, error: DomainError) -> Response:
    if error.status in (404, 410):
        return not_found(request)
    if error.status == 429:
        return too_many(request, error)
    return render(
        request,
        "message.html",
        status=error.status,
        private=True,
        title="Something went wrong",
        heading="That did not work",
        message=error.message + (f" ({error.hint})" if error.hint else ""),
    )


def when(start: dt.datetime, zone: str | None = None) -> str:
    """ "Tuesday 8 December 2026, 10:30" in the given zone (the value's own when None); a time
    the zone shows twice that day says which it is ("01:00 PST")."""
    from zoneinfo import ZoneInfo

    local = start.astimezone(ZoneInfo(zone)) if zone else start
    return f"{local:%A} {local.day} {local:%B %Y}, {clock(local)}"
