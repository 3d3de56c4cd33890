"""Sessions in a browser: the refresh token rides in an HttpOnly cookie instead of the body, and
every request that a cookie authenticates must prove it comes from our own pages (CSRF).

The proof is a signed double-submit token: a readable `atlilith_csrf` cookie whose value is a
nonce plus an HMAC of (session id, nonce). Page script reads it and echoes it in `X-CSRF-Token`;
another site can neither read our cookie nor set that header without a CORS preflight we refuse.
Binding the HMAC to the session means a token planted from a sibling subdomain (or taken from
another account) does not fit the victim's session. Transports apply the `Cookie`s described here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.config import Settings
from core.errors import PermissionDenied
from core.tenancy.schemas import AuthOut

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "REFRESH_COOKIE",
    "REFRESH_PATH",
    "Cookie",
    "CsrfProof",
    "browser_session",
    "cleared_cookies",
    "csrf_token",
    "verify_csrf",
]

REFRESH_COOKIE = "atlilith_refresh"
CSRF_COOKIE = "atlilith_csrf"
CSRF_HEADER = "X-CSRF-Token"
# Only the auth routes ever receive the refresh token; the rest of the site never sees it.
REFRESH_PATH = "/v1/auth"
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True)
class Cookie:
    """One Set-Cookie to send. `max_age=0` with an empty value deletes it."""

    name: str
    value: str
    max_age: int
    path: str
    http_only: bool
    secure: bool
    same_site: str = "strict"


@dataclass(frozen=True)
class CsrfProof:
    """What a cookie-authenticated request brought to prove it comes from our own page."""

    cookie: str | None  # the atlilith_csrf cookie
    header: str | None  # the X-CSRF-Token header
    origin: str | None  # the Origin header, when the browser sent one
    host: str  # the Host the request was addressed to


def _host_name(host: str) -> str:
    return urlsplit(f"//{host}").hostname or host


def _secure(host: str) -> bool:
    """`Secure` everywhere but plain-http development on this machine, where a browser would
    otherwise drop the cookie."""
    return _host_name(host).lower() not in _LOCAL_HOSTS and host.split(":")[0] not in _LOCAL_HOSTS


def _sign(settings: Settings, session_id: uuid.UUID, nonce: str) -> str:
    key = hashlib.sha256(b"atlilith-csrf\x00" + settings.resolved_jwt_secret().encode()).digest()
    return hmac.new(key, f"{session_id}.{nonce}".encode(), hashlib.sha256).hexdigest()


def csrf_token(settings: Settings, session_id: uuid.UUID) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_sign(settings, session_id, nonce)}"


_CSRF_REFUSED = "this request carries a refresh cookie but no valid CSRF proof"
_CSRF_HINT = (
    f"send the value of the {CSRF_COOKIE} cookie in the {CSRF_HEADER} header, from a page of "
    "this site; or sign in again"
)


def check_request_shape(proof: CsrfProof, allowed_origins: list[str] | None = None) -> None:
    """The session-independent half: header present and equal to the cookie, Origin ours."""
    if proof.origin is not None:
        origin = proof.origin.rstrip("/")
        own = urlsplit(origin).netloc.lower() == proof.host.lower()
        if not own and origin not in (allowed_origins or []):
            raise PermissionDenied(
                "this request comes from another site", code="csrf_origin", hint=_CSRF_HINT
            )
    if not proof.cookie or not proof.header or not hmac.compare_digest(proof.cookie, proof.header):
        raise PermissionDenied(_CSRF_REFUSED, code="csrf_failed", hint=_CSRF_HINT)


def verify_csrf(settings: Settings, session_id: uuid.UUID, proof: CsrfProof) -> None:
    """Refuse (403 `csrf_failed`) unless the proof is well formed, from our origin, and signed
    for this very session."""
    check_request_shape(proof, settings.cors_origins)
    assert proof.header is not None
    nonce, _, signature = proof.header.partition(".")
    if not nonce or not hmac.compare_digest(signature, _sign(settings, session_id, nonce)):
        raise PermissionDenied(_CSRF_REFUSED, code="csrf_failed", hint=_CSRF_HINT)


def browser_session(settings: Settings, out: AuthOut, host: str) -> tuple[AuthOut, list[Cookie]]:
    """Move a fresh token pair's refresh token out of the body into cookies (refresh + CSRF)."""
    assert out.refresh_token is not None and out.refresh_expires_at is not None
    assert out.session_id is not None
    session_id = out.session_id
    max_age = max(0, int((out.refresh_expires_at - dt.datetime.now(dt.UTC)).total_seconds()))
    secure = _secure(host)
    cookies = [
        Cookie(REFRESH_COOKIE, out.refresh_token, max_age, REFRESH_PATH, http_only=True, secure=secure),
        Cookie(CSRF_COOKIE, csrf_token(settings, session_id), max_age, "/", http_only=False, secure=secure),
    ]
    return out.model_copy(update={"refresh_token": None}), cookies


def cleared_cookies(host: str) -> list[Cookie]:
    secure = _secure(host)
    return [
        Cookie(REFRESH_COOKIE, "", 0, REFRESH_PATH, http_only=True, secure=secure),
        Cookie(CSRF_COOKIE, "", 0, "/", http_only=False, secure=secure),
    ]
