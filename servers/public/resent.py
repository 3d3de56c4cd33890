"""A booking form sent again after it was booked. Resent as it was, core replays the booking
(the form's idempotency key); sent again with changes (Back, edit, Book), core refuses the key
as used for another request. Booking the changed form anew would book the visitor twice, or
collide with their own booking: the page says the booking is made and links to it instead.

The link comes from this browser's own memory of what it booked: a cookie, scoped to the
booking pages and HttpOnly, pairing the form's key with the booking's manage token (which the
visitor was sent to already). No lookup by a key a visitor can write ever reveals a booking."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from servers.public.render import render, secure_cookie

__all__ = ["COOKIE", "KEPT_SECONDS", "already_booked", "remember_booking"]

COOKIE = "atl_booked"
# The keys the form makes (`secrets.token_urlsafe`): nothing else is remembered in a cookie.
_FORM_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")
# The cookie holds a bearer manage link: on a shared browser the next person could press Back,
# edit, Book and be handed it. It only serves a form resent moments after booking, so an hour.
KEPT_SECONDS = 3600


def remember_booking(request: Request, response: Response, key: str, status: str, token: str) -> None:
    """Pair the form's key with the booking it made, in this browser only."""
    if not _FORM_KEY.fullmatch(key):
        return
    response.set_cookie(
        COOKIE,
        f"{key}:{status}:{token}",
        max_age=KEPT_SECONDS,
        path="/book/",
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
    )


def already_booked(request: Request, key: str, back_url: str) -> Response:
    """The answer to a form sent again with changes after it was booked: nothing new is booked;
    the booking already made, linked when this browser made it."""
    parts = request.cookies.get(COOKIE, "").split(":", 2)
    remembered, status, token = parts if len(parts) == 3 else ("", "", "")
    if not token or remembered != key:
        heading = "This form was already sent"
        message = (
            "This form was sent before and the time was booked, so the changes were not sent. "
            "Use the link on the confirmation page to check the booking, move it or cancel it."
        )
        link = {"url": back_url, "label": "See the times"}
    else:
        asked = status == "requested"
        heading = "You already sent this request" if asked else "You already booked this time"
        made = "your request was sent" if asked else "your booking was made"
        message = (
            f"This form was sent before and {made}, so the changes were not sent. "
            "Open your booking to check it, move it or cancel it."
        )
        link = {"url": f"/manage/{token}", "label": "Open your booking"}
    return render(
        request,
        "message.html",
        status=409,
        private=True,
        title=heading,
        heading=heading,
        message=message,
        link=link,
    )
