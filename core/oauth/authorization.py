"""What the authorization server does once it knows the client: keep an authorization request
until a person decides, redeem a code once, rotate refresh tokens (a reused one revokes the
connection), revoke (RFC 7009). Transport-free: `servers/oauth.py` maps these to the MCP SDK's
handlers and models.

Every token is bound to one resource (RFC 8707): this server's MCP endpoint. A request naming
another resource is refused, and `core.auth` refuses a token anywhere but where it was minted
for."""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import InstrumentedAttribute

from core.credentials import OAUTH_ACCESS_PREFIX, OAUTH_REFRESH_PREFIX
from core.oauth.clients import ClientRecord, plain_text
from core.oauth.errors import OAuthError
from core.oauth.models import OAuthCode, OAuthGrant, OAuthRequest, OAuthToken
from core.oauth.scopes import check_scopes
from core.observability import get_logger
from core.uow import Database, UnitOfWork
from core.utilities import sha256_hex, utcnow

log = get_logger("atlilith.oauth")

# A single-use or bearer secret stored as its hash, belonging to a grant.
S = TypeVar("S", OAuthCode, OAuthToken)

_CHALLENGE_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class CodeRecord:
    code: str
    grant_id: uuid.UUID
    client_id: str
    redirect_uri: str
    redirect_uri_explicit: bool
    code_challenge: str
    scopes: list[str]
    resource: str
    expires_at: dt.datetime
    person_id: uuid.UUID


@dataclass(frozen=True)
class TokenRecord:
    token: str
    grant_id: uuid.UUID
    client_id: str
    scopes: list[str]
    resource: str
    expires_at: dt.datetime
    person_id: uuid.UUID


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    scopes: list[str] = field(default_factory=list)


def canonical_resource(db: Database, resource: str | None) -> str:
    """The resource a token will be bound to: this server's MCP endpoint, whatever the
    client named it as (a trailing slash aside); any other resource is refused (RFC 8707)."""
    ours = db.settings.mcp_resource_url
    if resource is None or resource.rstrip("/") == ours:
        return ours
    raise OAuthError(f"this server issues tokens for {ours} only, not {resource}", code="invalid_target")


# --- authorization requests ----------------------------------------------------------------------


async def start_request(
    db: Database,
    client: ClientRecord,
    *,
    redirect_uri: str,
    redirect_uri_explicit: bool,
    state: str | None,
    code_challenge: str,
    scopes: list[str] | None,
    resource: str | None,
) -> str:
    """Keep a validated authorization request until a person decides; returns the consent
    page's URL (the portal signs the person in first when needed)."""
    plain_text(
        {"redirect_uri": redirect_uri, "state": state, "scope": scopes, "resource": resource},
        "the authorization request",
        "invalid_request",
    )
    if not _CHALLENGE_RE.fullmatch(code_challenge):
        raise OAuthError(
            "code_challenge must be the base64url SHA-256 of the code verifier (PKCE S256)",
            code="invalid_request",
        )
    target = canonical_resource(db, resource)
    granted = check_scopes(scopes)
    request_id = secrets.token_urlsafe(32)
    meta = client.metadata
    async with db.system() as uow:
        uow.session.add(
            OAuthRequest(
                id=request_id,
                client_id=client.client_id,
                client_name=client.name,
                client_uri=_https_or_none(meta.get("client_uri")),
                logo_uri=_https_or_none(meta.get("logo_uri")),
                redirect_uri=redirect_uri,
                redirect_uri_explicit=redirect_uri_explicit,
                state=state,
                code_challenge=code_challenge,
                scopes=granted,
                resource=target,
                expires_at=utcnow() + dt.timedelta(seconds=db.settings.oauth_request_ttl_seconds),
            )
        )
    return f"{db.settings.base_url}/oauth/consent?{urlencode({'request': request_id})}"


def _https_or_none(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 2048:
        return None
    return value if urlsplit(value).scheme == "https" else None


def redirect_with(uri: str, **params: str | None) -> str:
    """`uri` with the response parameters added to its query (RFC 6749 §4.1.2)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


# --- codes ------------------------------------------------------------------------------------------


def _bound_terms(source: OAuthRequest | OAuthCode) -> dict[str, Any]:
    """What a code binds from its authorization request and hands back when redeemed: the token
    exchange checks the client, redirect URI, PKCE verifier and resource against these."""
    return {
        "client_id": source.client_id,
        "redirect_uri": source.redirect_uri,
        "redirect_uri_explicit": source.redirect_uri_explicit,
        "code_challenge": source.code_challenge,
        "scopes": list(source.scopes),
        "resource": source.resource,
    }


async def issue_code(uow: UnitOfWork, grant: OAuthGrant, request: OAuthRequest) -> str:
    """A single-use code for an approved request (inside the approval's transaction)."""
    code = secrets.token_urlsafe(32)
    uow.session.add(
        OAuthCode(
            code_hash=sha256_hex(code),
            grant_id=grant.id,
            **_bound_terms(request),
            expires_at=utcnow() + dt.timedelta(seconds=uow.db.settings.oauth_code_ttl_seconds),
        )
    )
    await uow.session.flush()
    return code


async def load_code(db: Database, client_id: str, code: str) -> CodeRecord | None:
    """The code's request, if it is this client's and unused. A code presented again after it
    was redeemed was intercepted or replayed: its connection is revoked (OAuth 2.1 §4.1.3)."""
    async with db.system() as uow:
        condition = OAuthCode.client_id == client_id
        row = await _unspent(
            uow, OAuthCode, OAuthCode.code_hash, code, condition, "code_reuse", "oauth_code_reuse"
        )
        if row is None:
            return None
        found, grant = row
        if grant.revoked_at is not None:
            return None
        return CodeRecord(
            code=code,
            grant_id=grant.id,
            **_bound_terms(found),
            expires_at=found.expires_at,
            person_id=grant.person_id,
        )


async def _with_grant(
    uow: UnitOfWork,
    model: type[S],
    hash_column: InstrumentedAttribute[str],
    secret: str,
    condition: ColumnElement[bool],
) -> tuple[S, OAuthGrant] | None:
    """The row a presented `secret` (a code or a token) hashes to, with its grant; `condition`
    narrows it (the client the code was issued to, the kind of token)."""
    row = (
        await uow.session.execute(
            select(model, OAuthGrant)
            .join(OAuthGrant, OAuthGrant.id == model.grant_id)
            .where(hash_column == sha256_hex(secret), condition)
        )
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


async def _unspent(
    uow: UnitOfWork,
    model: type[S],
    hash_column: InstrumentedAttribute[str],
    secret: str,
    condition: ColumnElement[bool],
    reuse_reason: str,
    reuse_event: str,
) -> tuple[S, OAuthGrant] | None:
    """`_with_grant` for a single-use secret, None when already used: one presented again after
    use was intercepted or replayed, so its connection is revoked (OAuth 2.1 §4.1.3 for codes;
    a rotated refresh token likewise). The reason and log event name which secret it was."""
    row = await _with_grant(uow, model, hash_column, secret, condition)
    if row is not None and row[0].used_at is not None:
        await _revoke_grant(uow, row[1].id, reuse_reason)
        log.warning(reuse_event, grant_id=str(row[1].id))
        return None
    return row


async def _spend(
    uow: UnitOfWork,
    model: type[OAuthCode] | type[OAuthToken],
    hash_column: InstrumentedAttribute[str],
    secret: str,
) -> bool:
    """Marks the single-use `secret` used; False when it already was. One conditional UPDATE, so
    of two racing redemptions exactly one wins."""
    spent = (
        await uow.session.execute(
            update(model)
            .where(hash_column == sha256_hex(secret), model.used_at.is_(None))
            .values(used_at=utcnow())
            .returning(hash_column)
        )
    ).scalar_one_or_none()
    return spent is not None


async def redeem_code(db: Database, record: CodeRecord) -> TokenPair:
    """Exchange a code (PKCE already verified by the token endpoint) for tokens, once. Two
    redemptions racing: the loser revokes the connection, as for any replayed code."""
    async with db.system() as uow:
        if await _spend(uow, OAuthCode, OAuthCode.code_hash, record.code):
            return await _issue_tokens(uow, record.grant_id, record.scopes, record.resource)
    await revoke_grant(db, record.grant_id, "code_reuse")
    raise OAuthError("the authorization code was already used", code="invalid_grant")


# --- tokens -----------------------------------------------------------------------------------------


async def _issue_tokens(uow: UnitOfWork, grant_id: uuid.UUID, scopes: list[str], resource: str) -> TokenPair:
    settings = uow.db.settings
    now = utcnow()
    access = OAUTH_ACCESS_PREFIX + secrets.token_urlsafe(32)
    refresh = OAUTH_REFRESH_PREFIX + secrets.token_urlsafe(40)
    for token, kind, ttl in (
        (access, "access", settings.oauth_access_token_ttl_seconds),
        (refresh, "refresh", settings.oauth_refresh_token_ttl_seconds),
    ):
        uow.session.add(
            OAuthToken(
                token_hash=sha256_hex(token),
                kind=kind,
                grant_id=grant_id,
                scopes=scopes,
                resource=resource,
                expires_at=now + dt.timedelta(seconds=ttl),
            )
        )
    await uow.session.flush()
    return TokenPair(access, settings.oauth_access_token_ttl_seconds, refresh, scopes)


def _live_record(token: str, found: tuple[OAuthToken, OAuthGrant] | None) -> TokenRecord | None:
    """The token's record while it lives: neither it nor its connection revoked, not expired."""
    if found is None:
        return None
    tok, grant = found
    if tok.revoked_at is not None or grant.revoked_at is not None or tok.expires_at <= utcnow():
        return None
    return TokenRecord(
        token=token,
        grant_id=grant.id,
        client_id=grant.client_id,
        scopes=list(tok.scopes),
        resource=tok.resource,
        expires_at=tok.expires_at,
        person_id=grant.person_id,
    )


async def load_refresh(db: Database, client_id: str, token: str) -> TokenRecord | None:
    """A live refresh token of this client. One presented after it was rotated has leaked
    (or its rotation raced): the connection is revoked, every token of it refused."""
    if not token.startswith(OAUTH_REFRESH_PREFIX):
        return None
    async with db.system() as uow:
        condition = and_(OAuthToken.kind == "refresh", OAuthGrant.client_id == client_id)
        found = await _unspent(
            uow,
            OAuthToken,
            OAuthToken.token_hash,
            token,
            condition,
            "refresh_token_reuse",
            "oauth_refresh_reuse",
        )
        return _live_record(token, found)


async def rotate_refresh(db: Database, record: TokenRecord, scopes: list[str]) -> TokenPair:
    """A new access and refresh token; the presented refresh token is spent."""
    async with db.system() as uow:
        spent = await _spend(uow, OAuthToken, OAuthToken.token_hash, record.token)
        revoked_at = (
            await uow.session.execute(select(OAuthGrant.revoked_at).where(OAuthGrant.id == record.grant_id))
        ).scalar_one_or_none()
        if spent and revoked_at is None:
            return await _issue_tokens(uow, record.grant_id, scopes or record.scopes, record.resource)
    if not spent:
        await revoke_grant(db, record.grant_id, "refresh_token_reuse")
        raise OAuthError("the refresh token was already used", code="invalid_grant")
    raise OAuthError("the connection was revoked", code="invalid_grant")


async def load_access(db: Database, token: str) -> TokenRecord | None:
    """A live access token (for revocation; calls to the resource go through `core.auth`)."""
    if not token.startswith(OAUTH_ACCESS_PREFIX):
        return None
    async with db.system() as uow:
        found = await _with_grant(uow, OAuthToken, OAuthToken.token_hash, token, OAuthToken.kind == "access")
        return _live_record(token, found)


async def revoke_grant(db: Database, grant_id: uuid.UUID, reason: str) -> None:
    """RFC 7009: revoking either token of a connection ends the whole connection."""
    async with db.system() as uow:
        await _revoke_grant(uow, grant_id, reason)


async def _revoke_grant(uow: UnitOfWork, grant_id: uuid.UUID, reason: str) -> None:
    revoked = (
        await uow.session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None))
            .values(revoked_at=utcnow(), revoked_reason=reason)
            .returning(OAuthGrant.person_id, OAuthGrant.org_id, OAuthGrant.client_id)
        )
    ).one_or_none()
    if revoked is not None:
        uow.emit(
            "platform/oauth_connection.revoked",
            {"connection_id": grant_id, "client_id": revoked.client_id, "reason": reason},
            person_id=revoked.person_id,
            org_id=revoked.org_id,
        )
