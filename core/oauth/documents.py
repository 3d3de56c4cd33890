"""Client ID metadata documents: a client whose client_id is an https URL publishes its
metadata there, and the authorization server fetches it. Fetching a URL a stranger chose is a
server-side request forgery risk, so: https only (plain http to a loopback address outside
production, for local clients and tests), the host must resolve to public addresses only
(loopback allowed outside production), no redirects, a small size cap and a short timeout."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import httpx

from core.config import Settings
from core.oauth.errors import OAuthError

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def _refused(reason: str) -> OAuthError:
    return OAuthError(f"client metadata document refused: {reason}", code="invalid_client")


def is_document_client_id(client_id: str, settings: Settings) -> bool:
    """Whether `client_id` has the shape of a metadata document URL we may fetch."""
    try:
        parts = urlsplit(client_id)
    except ValueError:
        return False
    if parts.username or parts.password or parts.fragment or parts.path in ("", "/"):
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return True
    return parts.scheme == "http" and settings.env != "production" and host in _LOOPBACK


async def _check_addresses(host: str, port: int, settings: Settings) -> None:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM),
            settings.oauth_client_document_timeout_seconds,
        )
    except (OSError, TimeoutError) as exc:
        raise _refused(f"cannot resolve {host}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_global:
            continue
        if address.is_loopback and settings.env != "production":
            continue
        raise _refused(f"{host} resolves to a non-public address")


async def fetch_client_document(url: str, settings: Settings) -> dict[str, Any]:
    if not is_document_client_id(url, settings):
        raise _refused("the client_id is not an https URL with a path")
    parts = urlsplit(url)
    host = parts.hostname or ""
    await _check_addresses(host, parts.port or (443 if parts.scheme == "https" else 80), settings)
    limit = settings.oauth_client_document_max_bytes
    body = bytearray()
    try:
        async with (
            httpx.AsyncClient(
                timeout=settings.oauth_client_document_timeout_seconds,
                follow_redirects=False,
                trust_env=False,
            ) as http,
            http.stream("GET", url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise _refused(f"fetching it answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    raise _refused(f"it is larger than {limit} bytes")
    except httpx.HTTPError as exc:
        raise _refused(f"fetching it failed ({type(exc).__name__})") from exc
    try:
        document = json.loads(bytes(body))
    except ValueError as exc:
        raise _refused("it is not JSON") from exc
    if not isinstance(document, dict):
        raise _refused("it is not a JSON object")
    if document.get("client_id") != url:
        raise _refused("its client_id is not the URL it was fetched from")
    if document.get("token_endpoint_auth_method", "none") != "none":
        raise _refused("only public clients (token_endpoint_auth_method none) may use a document")
    if "client_secret" in document:
        raise _refused("a document must not carry a client_secret")
    return document
