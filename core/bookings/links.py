"""Client manage links: signed, expiring tokens that reach one booking and nothing else.

Clients have no accounts. A manage token is a JWT for the audience `atlilith-manage`, signed with
a key derived from (not equal to) the access-token secret, naming one booking. An access token is
not a manage token and a manage token is not an access token: audiences and keys both differ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from dataclasses import dataclass

import jwt

from core.config import Settings
from core.errors import Gone, NotFound
from core.utilities import utcnow

AUDIENCE = "atlilith-manage"
_ALGORITHM = "HS256"


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.resolved_jwt_secret().encode(), b"bookings-manage-link", hashlib.sha256).digest()


def lasts_until(settings: Settings, end_at: dt.datetime, issued_at: dt.datetime) -> dt.datetime:
    """When a link to a booking ending at `end_at`, issued at `issued_at`, stops working: the end
    plus the configured grace (at least an hour after issue, for a link to a past booking)."""
    return max(end_at, issued_at + dt.timedelta(hours=1)) + dt.timedelta(
        hours=settings.bookings_manage_link_grace_hours
    )


def issue(
    settings: Settings, booking_id: uuid.UUID, end_at: dt.datetime, generation: int = 0
) -> tuple[str, dt.datetime]:
    """A token valid until the booking ends plus the configured grace (at least an hour from now),
    of the booking's current link generation (older generations are revoked). The expiry is the
    booking's as it stands now: `alive` extends it when the booking moves later."""
    now = utcnow()
    expires = lasts_until(settings, end_at, now)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": AUDIENCE,
        "sub": str(booking_id),
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
        "gen": generation,
    }
    return jwt.encode(claims, _key(settings), algorithm=_ALGORITHM), dt.datetime.fromtimestamp(
        int(expires.timestamp()), dt.UTC
    )


@dataclass(frozen=True)
class Claims:
    booking_id: uuid.UUID
    generation: int
    issued_at: dt.datetime
    expires_at: dt.datetime


def read(settings: Settings, token: str) -> Claims:
    """What a token of ours says; NotFound when it is not one of ours. Whether it is still alive
    depends on its booking too: see `alive`."""
    try:
        # The signed `exp` is when the booking ended at issue; a booking moved later keeps the
        # links already sent (in messages, reminders) working, so `alive` decides, not PyJWT.
        claims = jwt.decode(
            token,
            _key(settings),
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "aud", "iss"], "verify_exp": False},
        )
        expires = dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC)
        issued = dt.datetime.fromtimestamp(int(claims.get("iat", claims["exp"])), dt.UTC)
        return Claims(uuid.UUID(str(claims["sub"])), int(claims.get("gen", 0)), issued, expires)
    except (jwt.PyJWTError, ValueError, KeyError, TypeError, OverflowError, OSError) as exc:
        raise NotFound(
            "no booking for this link",
            code="manage_link_invalid",
            hint="check that the whole link was copied",
        ) from exc


def alive(settings: Settings, claims: Claims, end_at: dt.datetime) -> None:
    """Gone once both the token's own expiry and the booking's current end (plus the grace) have
    passed: a link lives as long as the booking it names, wherever the booking has moved."""
    until = max(claims.expires_at, lasts_until(settings, end_at, claims.issued_at))
    if utcnow() >= until:
        raise Gone(
            "this manage link has expired",
            code="manage_link_expired",
            hint="ask the provider for a new link",
        )


def url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/manage/{token}"
