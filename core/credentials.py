"""Credentials shared by REST and MCP, checked for form but not yet for liveness: passwords
(argon2), session tokens (PyJWT), API keys, refresh tokens and parsing a bearer credential.
Turning one into a live `TenantContext` is `core.auth`'s job (it needs the database)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import CHEAPEST, RFC_9106_LOW_MEMORY

from core.config import Settings
from core.context import ALL_SCOPES
from core.errors import Unauthenticated
from core.utilities import sha256_hex, utcnow

API_KEY_PREFIX = "atl_"
REFRESH_PREFIX = "atr_"
# OAuth tokens of MCP hosts (core.oauth): opaque, stored hashed, valid at the MCP resource only.
OAUTH_ACCESS_PREFIX = "atoa_"
OAUTH_REFRESH_PREFIX = "ator_"
_API_KEY_RE = re.compile(r"^atl_([a-z0-9]{8})_([A-Za-z0-9_-]{32,64})$")
_BEARER_RE = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


# --- passwords -------------------------------------------------------------------------------


class Passwords:
    """argon2id hashing; verification runs off the event loop (it is deliberately slow)."""

    def __init__(self, profile: str = "default") -> None:
        params = CHEAPEST if profile == "cheapest" else RFC_9106_LOW_MEMORY
        self._hasher = PasswordHasher.from_parameters(params)
        # Verifying against this keeps failed logins for unknown users as slow as real ones.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


# --- session tokens --------------------------------------------------------------------------


@dataclass(frozen=True)
class AccessClaims:
    person_id: uuid.UUID
    session_id: uuid.UUID
    device_id: str
    org_id: uuid.UUID | None
    org_role: str | None
    scopes: frozenset[str]
    expires_at: dt.datetime


# Decoded tokens remembered per `Tokens` (bounded): see `Tokens.decode`.
DECODED_CACHE_SIZE = 4096
# PyJWT's leeway on `exp`, kept by the memo too.
LEEWAY_SECONDS = 5


class Tokens:
    algorithm = "HS256"

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.resolved_jwt_secret()
        self.audience = settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.ttl = dt.timedelta(seconds=settings.access_token_ttl_seconds)
        self._decoded: OrderedDict[str, AccessClaims] = OrderedDict()

    def issue(
        self,
        *,
        person_id: uuid.UUID,
        session_id: uuid.UUID,
        device_id: str,
        org_id: uuid.UUID | None,
        org_role: str | None,
        scopes: frozenset[str] = frozenset({ALL_SCOPES}),
        ttl: dt.timedelta | None = None,
    ) -> tuple[str, dt.datetime]:
        now = utcnow()
        expires = now + (ttl or self.ttl)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": str(person_id),
            "sid": str(session_id),
            "device_id": device_id,
            "org_id": str(org_id) if org_id else None,
            "org_role": org_role,
            "scope": " ".join(sorted(scopes)),
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=self.algorithm), expires

    def decode(self, token: str) -> AccessClaims:
        """The claims of a token this server signed, or `Unauthenticated`. A request decodes its
        token more than once (the rate limit, then the context), and a client sends the same one
        for many requests: what a signature check proved about these exact bytes under this
        secret stays proved, so it is remembered -- only expiry changes with time, and it is
        checked on every use. Liveness (session signed out, person suspended) is not a property
        of the token: `core.auth` reads it from the database on every request."""
        known = self._decoded.get(token)
        if known is not None:
            if known.expires_at.timestamp() + LEEWAY_SECONDS <= utcnow().timestamp():
                del self._decoded[token]
                raise _expired()
            self._decoded.move_to_end(token)
            return known
        claims = self._verify(token)
        self._decoded[token] = claims
        if len(self._decoded) > DECODED_CACHE_SIZE:
            self._decoded.popitem(last=False)
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self.algorithm],  # never "none", never a key-confusion algorithm
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "sid", "aud", "iss"]},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError as exc:
            raise _expired() from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated(
                "the access token was issued for another audience",
                code="token_wrong_audience",
                hint=f"use a token issued for {self.audience!r}",
            ) from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(
                "the access token is not valid",
                code="token_invalid",
                hint="sign in again ([[tenancy.login]]) or use an API key",
            ) from exc
        try:
            org = claims.get("org_id")
            return AccessClaims(
                person_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                device_id=str(claims.get("device_id") or ""),
                org_id=uuid.UUID(org) if org else None,
                org_role=claims.get("org_role"),
                scopes=frozenset(str(claims.get("scope") or "").split()),
                expires_at=dt.datetime.fromtimestamp(int(claims["exp"]), dt.UTC),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise Unauthenticated(
                "the access token is malformed",
                code="token_invalid",
                hint="send the token as sign-in returned it, or sign in again ([[tenancy.login]])",
            ) from exc


def _expired() -> Unauthenticated:
    return Unauthenticated(
        "the access token has expired",
        code="token_expired",
        hint="get a new one with [[tenancy.refresh]], or sign in again",
    )


# --- API keys and refresh tokens ---------------------------------------------------------------


@dataclass(frozen=True)
class NewApiKey:
    token: str  # shown once
    prefix: str
    secret_hash: str


def new_api_key() -> NewApiKey:
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
    secret = secrets.token_urlsafe(32)
    return NewApiKey(
        token=f"{API_KEY_PREFIX}{prefix}_{secret}", prefix=prefix, secret_hash=sha256_hex(secret)
    )


def parse_api_key(token: str) -> tuple[str, str] | None:
    match = _API_KEY_RE.fullmatch(token)
    if not match:
        return None
    return match.group(1), sha256_hex(match.group(2))


def new_refresh_token() -> tuple[str, str]:
    token = REFRESH_PREFIX + secrets.token_urlsafe(40)
    return token, sha256_hex(token)


# --- bearer credentials ------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    """A bearer credential checked for form (and signature, for tokens); not yet for liveness."""

    raw: str
    claims: AccessClaims | None = None
    api_key: tuple[str, str] | None = None  # (prefix, secret hash)
    oauth_hash: str | None = None  # sha256 of an OAuth access token


def bearer_from_header(authorization: str | None) -> str | None:
    if not authorization:
        return None
    match = _BEARER_RE.fullmatch(authorization)
    return match.group(1) if match else None


def parse_credential(raw: str | None, tokens: Tokens) -> Credential:
    if not raw:
        raise Unauthenticated(
            "no credential was sent",
            code="missing_credential",
            hint="send `Authorization: Bearer <access token or API key>`",
        )
    if raw.startswith(API_KEY_PREFIX):
        parsed = parse_api_key(raw)
        if parsed is None:
            raise Unauthenticated(
                "the API key is malformed",
                code="api_key_invalid",
                hint="send the whole key as it was shown once, `atl_<prefix>_<secret>`, or create a new one",
            )
        return Credential(raw=raw, api_key=parsed)
    if raw.startswith(OAUTH_ACCESS_PREFIX):
        return Credential(raw=raw, oauth_hash=sha256_hex(raw))
    return Credential(raw=raw, claims=tokens.decode(raw))
