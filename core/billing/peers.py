"""Talking to peer components: signed calls out, signed callbacks in.

A signature is `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>` sent as
`X-Atlilith-Signature` with `X-Atlilith-Timestamp` (Unix seconds). The same scheme signs our
calls to a peer (so it can check they are ours), the peer's callbacks, and the purchase webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import httpx

from core.config import Settings
from core.observability import get_logger

log = get_logger("atlilith.billing.peers")

TIMESTAMP_HEADER = "X-Atlilith-Timestamp"
SIGNATURE_HEADER = "X-Atlilith-Signature"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    tolerance: int,
    now: float | None = None,
) -> str | None:
    """None when the signature is good and fresh; else the reason (a stable error code)."""
    if not timestamp or not signature:
        return "signature_missing"
    try:
        sent = int(timestamp)
    except ValueError:
        return "signature_invalid"
    if abs((now if now is not None else time.time()) - sent) > tolerance:
        return "signature_stale"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip()):
        return "signature_invalid"
    return None


def signed_headers(secret: str, body: bytes, *, trace_id: str | None = None) -> dict[str, str]:
    timestamp = str(int(time.time()))
    headers = {
        "content-type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }
    if trace_id:
        headers["traceparent"] = traceparent(trace_id)
    return headers


def traceparent(trace_id: str) -> str:
    """W3C trace context carrying the job's trace id (a job id is 32 hex digits)."""
    return f"00-{trace_id}-{secrets.token_hex(8)}-01"


@dataclass(frozen=True)
class Outcome:
    ok: bool
    code: str = ""
    message: str = ""


async def call(
    settings: Settings, url: str, body: bytes, secret: str, *, trace_id: str, job_id: str
) -> Outcome:
    """POST a job to a peer: bounded attempts on connection errors, timeouts, 5xx and 429; a 4xx
    is the peer's final word. The peer dedupes our retries by `Idempotency-Key` (the job id)."""
    attempts = settings.peer_max_attempts
    last = Outcome(False, "peer_unreachable", "the peer could not be reached")
    async with httpx.AsyncClient(timeout=settings.peer_request_timeout_seconds) as client:
        for attempt in range(1, attempts + 1):
            headers = {**signed_headers(secret, body, trace_id=trace_id), "Idempotency-Key": job_id}
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.TimeoutException:
                last = Outcome(
                    False,
                    "peer_timeout",
                    f"the peer did not answer within {settings.peer_request_timeout_seconds:g} s",
                )
            except httpx.TransportError as exc:
                last = Outcome(
                    False, "peer_unreachable", f"the peer could not be reached ({type(exc).__name__})"
                )
            else:
                if 200 <= response.status_code < 300:
                    log.info("peer_accepted", status=response.status_code, attempt=attempt)
                    return Outcome(True)
                if response.status_code != 429 and response.status_code < 500:
                    return Outcome(
                        False, "peer_rejected", f"the peer refused the job (HTTP {response.status_code})"
                    )
                last = Outcome(False, "peer_error", f"the peer answered HTTP {response.status_code}")
            log.warning("peer_call_failed", attempt=attempt, of=attempts, code=last.code)
            if attempt < attempts:
                await asyncio.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
    return last


async def health(settings: Settings, base_url: str) -> tuple[bool, int | None, float]:
    """GET {base}/health: (healthy, HTTP status or None, seconds taken)."""
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=settings.peer_request_timeout_seconds) as client:
            response = await client.get(f"{base_url}/health")
    except httpx.HTTPError:
        return False, None, time.perf_counter() - started
    return response.status_code == 200, response.status_code, time.perf_counter() - started
