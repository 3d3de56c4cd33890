"""OAuth clients: registered dynamically (RFC 7591) or known by the URL of their metadata
document (fetched by `core.oauth.documents`); redirect URIs they may use."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic_core import PydanticCustomError
from sqlalchemy import select, update

from core.oauth.documents import fetch_client_document, is_document_client_id
from core.oauth.errors import OAuthError
from core.oauth.models import OAuthClient
from core.oauth.scopes import check_scopes
from core.observability import get_logger
from core.uow import Database
from core.utilities import sha256_hex, utcnow
from core.validation import check_json_text

log = get_logger("atlilith.oauth")

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
MAX_NAME = 100
MAX_REDIRECT_URIS = 10


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    kind: str
    secret_hash: str | None
    metadata: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.metadata.get("client_name") or self.client_id)[:MAX_NAME]


def check_redirect_uri(uri: str) -> None:
    """https anywhere; http only back to this machine (loopback, RFC 8252 §7.3); a private-use
    scheme of a native app (reverse domain name, §7.1). Never a fragment, never a script."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if parts.fragment:
        raise OAuthError("a redirect URI may not carry a fragment", code="invalid_redirect_uri")
    if scheme == "https" and parts.hostname:
        return
    if scheme == "http" and (parts.hostname or "").lower() in _LOOPBACK_HOSTS:
        return
    if "." in scheme and scheme not in {"http", "https"}:
        return
    raise OAuthError(
        f"redirect URI {uri!r} is not allowed: use https, http on a loopback address, or a "
        "reverse-domain private-use scheme",
        code="invalid_redirect_uri",
    )


# Characters that reorder the text around them: in an app's name they could make the consent
# page read otherwise than it says ("Connect Claude?", the browser's return address mirrored).
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain_text(value: Any, what: str, code: str) -> None:
    """Refuse text PostgreSQL cannot hold (NUL) and other control characters, anywhere in
    `value`, as an OAuth error naming `what`."""
    try:
        check_json_text(value)
    except PydanticCustomError as exc:
        raise OAuthError(f"{what}: {exc.message()}", code=code) from exc


def _clean_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    plain_text(metadata, "client metadata", "invalid_client_metadata")
    uris = metadata.get("redirect_uris") or []
    if not isinstance(uris, list) or not uris or len(uris) > MAX_REDIRECT_URIS:
        raise OAuthError(
            f"redirect_uris must list 1 to {MAX_REDIRECT_URIS} URIs", code="invalid_redirect_uri"
        )
    for uri in uris:
        check_redirect_uri(str(uri))
    name = metadata.get("client_name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise OAuthError(
            f"client_name must be text of at most {MAX_NAME} characters", code="invalid_client_metadata"
        )
    if isinstance(name, str) and _BIDI_CONTROLS.search(name):
        raise OAuthError(
            "client_name must not contain bidirectional control characters (they disguise text)",
            code="invalid_client_metadata",
        )
    scope = metadata.get("scope")
    if scope:
        check_scopes(str(scope).split())
    return {k: v for k, v in metadata.items() if k not in {"client_secret", "client_secret_expires_at"}}


async def register_client(db: Database, metadata: dict[str, Any], secret: str | None) -> None:
    """Dynamic client registration (RFC 7591): the SDK minted the id and any secret; only its
    hash is kept."""
    clean = _clean_metadata(metadata)
    async with db.system() as uow:
        uow.session.add(
            OAuthClient(
                client_id=str(clean["client_id"]),
                kind="registered",
                secret_hash=sha256_hex(secret) if secret else None,
                client_name=clean.get("client_name"),
                metadata_=clean,
            )
        )
    log.info("oauth_client_registered", client_id=str(clean["client_id"]))


async def get_client(db: Database, client_id: str) -> ClientRecord | None:
    """A registered client, or one whose client_id is the URL of its metadata document (fetched
    safely, kept for a while, fetched again after `oauth_client_document_cache_seconds`)."""
    try:
        plain_text(client_id, "client_id", "invalid_request")
    except OAuthError:
        return None  # no client is named so (and PostgreSQL could not even look for one)
    if len(client_id) > 2048:
        return None
    async with db.system() as uow:
        row = (
            await uow.session.execute(select(OAuthClient).where(OAuthClient.client_id == client_id))
        ).scalar_one_or_none()
        if row is not None and (row.refresh_after is None or row.refresh_after > utcnow()):
            return ClientRecord(row.client_id, row.kind, row.secret_hash, dict(row.metadata_))
    if not is_document_client_id(client_id, db.settings):
        return None
    try:
        document = await fetch_client_document(client_id, db.settings)
        clean = _clean_metadata(document)
    except OAuthError as err:
        log.info("oauth_client_document_refused", client_id=client_id, reason=err.message)
        return None
    refresh_after = utcnow() + dt.timedelta(seconds=db.settings.oauth_client_document_cache_seconds)
    async with db.system() as uow:
        if row is None:
            uow.session.add(
                OAuthClient(
                    client_id=client_id,
                    kind="document",
                    client_name=clean.get("client_name"),
                    metadata_=clean,
                    refresh_after=refresh_after,
                )
            )
        else:
            await uow.session.execute(
                update(OAuthClient)
                .where(OAuthClient.client_id == client_id)
                .values(client_name=clean.get("client_name"), metadata_=clean, refresh_after=refresh_after)
            )
    return ClientRecord(client_id, "document", None, clean)
