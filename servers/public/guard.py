"""What every public form post passes before it reaches core: the CSRF token, the honeypot,
the optional challenge hook and, for bookings, the page's own rate limit (bookings made count,
refused attempts do not)."""

from __future__ import annotations

import hmac
import importlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from functools import cache
from typing import cast

from starlette.requests import Request

from core.config import Settings
from core.errors import DomainError, PermissionDenied, ValidationFailed
from core.observability import get_logger
from core.ratelimit import RateLimits
from servers.public.render import CSRF_COOKIE

__all__ = ["Challenge", "check_form", "check_target", "count_booking"]

Challenge = Callable[[Mapping[str, str], str], Awaitable[bool]]
HONEYPOT = "website"
log = get_logger("atlilith.public")


@cache
def _challenge(path: str) -> Challenge:
    module, _, name = path.partition(":")
    return cast(Challenge, getattr(importlib.import_module(module), name))


def _address(request: Request) -> str:
    limits: RateLimits = request.app.state.rate_limits
    client = request.client
    return limits.address(client.host if client else None, request.headers.get("x-forwarded-for"))


async def check_form(request: Request, form: Mapping[str, str]) -> None:
    """Refuse a post without the visitor's CSRF token, with the honeypot filled, or failing the
    configured challenge. The messages say what a person can do; a bot learns nothing new."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if len(cookie) < 32 or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise PermissionDenied(
            "this form has expired",
            code="form_expired",
            hint="reload the page and send the form again (cookies must be allowed)",
        )
    if form.get(HONEYPOT):
        raise ValidationFailed(
            "the form could not be sent", code="form_refused", hint="reload the page and try again"
        )
    settings: Settings = request.app.state.settings
    if settings.public_challenge and not await _challenge(settings.public_challenge)(form, _address(request)):
        raise PermissionDenied(
            "the check that you are a person did not pass",
            code="challenge_failed",
            hint="reload the page and try again",
        )


async def check_target(request: Request, target: str) -> None:
    """Refuse a booking on a page that has taken its bookings for the window (whoever made
    them); nothing is counted here, see `count_booking`."""
    limits: RateLimits = request.app.state.rate_limits
    verdict = await limits.check_target(target)
    if not verdict.allowed:
        error: DomainError = verdict.error()
        error.message = "this booking page is busy right now"
        raise error


async def count_booking(request: Request, target: str, booking: uuid.UUID) -> None:
    """Count a booking made on the page `target` against its limit: refused attempts never
    count, so no visitor can close a provider's page by sending forms core refuses."""
    limits: RateLimits = request.app.state.rate_limits
    try:
        await limits.count_booking(target, str(booking))
    except Exception:  # whatever the storage raises
        # The booking is made and committed: a limiter store that fails (Redis away) must not
        # turn it into an error page with no way to the booking. It goes uncounted, logged.
        log.exception("public_booking_not_counted", target=target, booking=str(booking))
