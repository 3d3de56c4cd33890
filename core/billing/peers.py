"""Talking to peer components: signed calls out, signed callbacks in.

Every request either way is signed per Standard Webhooks (core.webhooks): our calls to a peer
(so it can check they are ours) with every active key of the peer, its callbacks with any one
of them, and the purchase webhook with the provider's key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from opentelemetry import propagate

from core import webhooks
from core.config import Settings
from core.observability import SpanKind, annotate, get_logger, trace

log = get_logger("atlilith.billing.peers")


def signed_headers(keys: Sequence[str], body: bytes, *, message_id: str) -> dict[str, str]:
    """Signed JSON headers; the active span goes along as W3C `traceparent` (OpenTelemetry
    propagation), so the peer's work joins the job's trace."""
    headers = {
        "content-type": "application/json",
        **webhooks.signed_headers(keys, body, message_id=message_id),
    }
    propagate.inject(headers)
    return headers


@dataclass(frozen=True)
class Outcome:
    ok: bool
    code: str = ""
    message: str = ""


async def call(
    settings: Settings, url: str, body: bytes, keys: Sequence[str], *, trace_id: str, job_id: str
) -> Outcome:
    """POST a job to a peer: bounded attempts on connection errors, timeouts, 5xx and 429; a 4xx
    is the peer's final word. The peer dedupes our retries by `Idempotency-Key` and
    `webhook-id` (both the job id)."""
    with trace(
        trace_id,
        name="peer call",
        kind=SpanKind.CLIENT,
        attributes={"http.request.body.size": len(body)},
        job_id=job_id,
    ):
        outcome = await _call(settings, url, body, keys, job_id=job_id)
        annotate(**{"atlilith.outcome": outcome.code or "accepted"})
        return outcome


async def _call(settings: Settings, url: str, body: bytes, keys: Sequence[str], *, job_id: str) -> Outcome:
    attempts = settings.peer_max_attempts
    last = Outcome(False, "peer_unreachable", "the peer could not be reached")
    async with httpx.AsyncClient(timeout=settings.peer_request_timeout_seconds) as client:
        for attempt in range(1, attempts + 1):
            headers = {**signed_headers(keys, body, message_id=job_id), "Idempotency-Key": job_id}
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
