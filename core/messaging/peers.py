"""Talking to peers over HTTP: the drafting peer and the channels' delivery peers.

A peer gets what it needs and nothing else: never the caller's token. Requests are signed per
Standard Webhooks (core.webhooks) with every key of `ATLILITH_MESSAGING_PEER_SECRET` when it is
set, carry an `Idempotency-Key` when the operation has one and the trace as W3C `traceparent`,
and never follow redirects.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from opentelemetry import propagate

from core import __version__, webhooks
from core.config import Settings
from core.observability import get_logger

log = get_logger("atlilith.messaging.peers")

# 4xx that may succeed later; any other 4xx means the request itself is refused.
_RETRYABLE_4XX = {408, 409, 425, 429}


@dataclass
class PeerError(Exception):
    """A peer could not be reached or refused the request. `permanent`: retrying won't help."""

    reason: str
    permanent: bool = False
    status: int | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class PeerReply:
    data: dict[str, Any]
    latency_ms: int
    status: int


def canonical_json(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def peer_label(url: str) -> str:
    """How a peer is recorded: host and path, never credentials or a query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def host_allowed(url: str, patterns: list[str]) -> bool:
    """Whether a context may point peers at this URL (`host` or `host:port` fnmatch patterns)."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.username or parts.password:
        return False
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return any(fnmatch.fnmatchcase(f"{host}:{port}", p) or fnmatch.fnmatchcase(host, p) for p in patterns)


async def post_json(
    settings: Settings,
    url: str,
    payload: dict[str, Any],
    *,
    event: str,
    idempotency_key: str | None = None,
    retries: int = 0,
) -> PeerReply:
    """POST `payload` to a peer. Connection errors, timeouts, 5xx and 408/409/425/429 are tried
    again up to `retries` times (with a short backoff); the last failure raises PeerError."""
    body = canonical_json(payload)
    headers = _headers(event, idempotency_key)
    keys = webhooks.secret_list(settings.messaging_peer_secret)
    # One message id for every attempt: a resend is recognisably the same message.
    message_id = f"msg_{idempotency_key or uuid.uuid4().hex}"
    timeout = httpx.Timeout(settings.messaging_peer_timeout_seconds)
    last: PeerError | None = None
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        for attempt in range(retries + 1):
            if attempt:
                await asyncio.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
            if keys:
                headers.update(webhooks.signed_headers(keys, body, message_id=message_id))
            try:
                return await _attempt(client, url, body, headers)
            except PeerError as err:
                if err.permanent:
                    raise
                last = err
    assert last is not None
    log.warning("peer_failed", peer=peer_label(url), event_name=event, reason=last.reason, tries=retries + 1)
    raise last


def _headers(event: str, idempotency_key: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"atlilith/{__version__}",
        "X-Atlilith-Event": event,
    }
    # The active span as W3C `traceparent` (OpenTelemetry propagation): the peer's own traces
    # (an LLM-tracing tool's, say) join ours by its trace id.
    propagate.inject(headers)
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return headers


async def _attempt(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> PeerReply:
    """One POST. A failure worth trying again raises a transient PeerError; a refusal or an
    answer that is not a JSON object, a permanent one."""
    started = time.perf_counter()
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        raise PeerError(f"the peer at {peer_label(url)} timed out") from None
    except httpx.HTTPError as exc:
        raise PeerError(f"the peer at {peer_label(url)} is unreachable ({type(exc).__name__})") from None
    latency = int((time.perf_counter() - started) * 1000)
    if response.status_code >= 500 or response.status_code in _RETRYABLE_4XX:
        raise PeerError(
            f"the peer at {peer_label(url)} answered {response.status_code}",
            status=response.status_code,
        )
    if response.status_code >= 300:
        raise PeerError(
            f"the peer at {peer_label(url)} refused the request ({response.status_code}): "
            + _short(response.text),
            permanent=True,
            status=response.status_code,
        )
    try:
        data = response.json() if response.content else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PeerError(
            f"the peer at {peer_label(url)} answered something other than a JSON object",
            permanent=True,
            status=response.status_code,
        )
    return PeerReply(data=data, latency_ms=latency, status=response.status_code)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
