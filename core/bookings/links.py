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

import jwt

from core.config import Settings
from core.errors import Gone, NotFound
from core.utilities import utcnow

AUDIENCE = "atlilith-manage"
_ALGORITHM = "HS256"


def _key(settings: Settings) -> bytes:
    return hmac.new(settings.resolved_jwt_secret().encode(), b"bookings-manage-link", hashlib.sha256).digest()


def issue(
    settings: Settings, booking_id: uuid.UUID, end_at: dt.datetime, generation: int = 0
) -> tuple[str, dt.datetime]:
    """A token valid until the booking ends plus the configured grace (at least an hour from now),
    of the booking's current link generation (older generations are revoked)."""
    now = utcnow()
    expires = max(end_at, now + dt.timedelta(hours=1)) + dt.timedelta(
        hours=settings.bookings_manage_link_grace_hours
    )
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


def read(settings: Settings, token: str) -> tuple[uuid.UUID, int]:
    """The booking a token names and its link generation; NotFound when it is not one of ours,
    Gone when it expired."""
    try:
        claims = jwt.decode(
            token,
            _key(settings),
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "sub", "aud", "iss"]},
        )
        return uuid.UUID(str(claims["sub"])), int(claims.get("gen", 0))
    except jwt.ExpiredSignatureError as exc:
        raise Gone(
            "this manage link has expired",
            code="manage_link_expired",
            hint="ask the provider for a new link",
        ) from exc
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise NotFound(
            "no booking for this link",
            code="manage_link_invalid",
            hint="check that the whole link was copied",
        ) from exc


def url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/manage/{token}"
