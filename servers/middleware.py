"""Pure ASGI middleware: trace ids and request logs, and the request body limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.db import start_statement_count
from core.observability import SpanKind, current_trace_id, get_logger, trace, within_current

log = get_logger("atlilith.http")
# Probes an orchestrator calls every few seconds: answered, counted in the metrics, not logged.
PROBES = frozenset({"/health", "/health/live", "/health/ready"})

# Requests that never get a recorded span: health probes and metric scrapes come every few
# seconds and would drown the traces that matter.
UNTRACED_PATHS = ("/health", "/metrics")


class RequestContext:
    """Every request runs in a span: the OpenTelemetry ASGI instrumentation's server span when
    tracing is on (`servers.telemetry`), else a bare span continuing the caller's `traceparent`
    (or `X-Trace-Id`) through the configured propagators. Its trace id is echoed as `X-Trace-Id`
    and every log line written while it runs carries it, with the span id."""

    def __init__(self, app: ASGIApp, *, expose_db_stats: bool = False) -> None:
        self.app = app
        self.expose_db_stats = expose_db_stats
        self._textmap: object = None
        self._field_names: frozenset[bytes] = frozenset()

    def _fields(self) -> frozenset[bytes]:
        """The header names the configured propagators read, as ASGI spells them."""
        textmap = propagate.get_global_textmap()
        if textmap is not self._textmap:
            self._field_names = frozenset(f.lower().encode("latin-1") for f in textmap.fields)
            self._textmap = textmap
        return self._field_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        component = _component(path)
        if otel_trace.get_current_span().get_span_context().is_valid:
            # The instrumentation's server span is the request's span: join it, start none.
            with within_current(component=component) as trace_id:
                await self._serve(scope, receive, send, trace_id, path)
            return
        # Only the fields the propagators read are decoded, and nothing is extracted from a
        # request that carries none of them (most do not): the span then starts a new trace,
        # as extracting from no fields would have.
        fields = self._fields()
        carried = {
            k.decode("latin-1").lower(): v.decode("latin-1")
            for k, v in scope.get("headers", ())
            if k.lower() in fields
        }
        caller = propagate.extract(carried) if carried else None
        method = scope.get("method", "")
        # Paths the instrumentation leaves out (probes, scrapes) get ids for their logs only.
        record = not path.startswith(UNTRACED_PATHS)
        with trace(
            name=f"{method} {path}", context=caller, kind=SpanKind.SERVER, record=record, component=component
        ) as trace_id:
            await self._serve(scope, receive, send, trace_id, path)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, trace_id: str, path: str) -> None:
        stats = start_statement_count()
        started = time.perf_counter()
        status = 500
        started_flag = [False]

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                started_flag[0] = True
                status = message["status"]
                extra = [(b"x-trace-id", trace_id.encode())]
                if self.expose_db_stats:
                    extra.append((b"x-db-statements", str(stats.count).encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # The one place an unexpected error becomes a response: logged with its trace
            # id, answered with a bare 500 problem (no message, no SQL, no stack).
            log.error("unhandled_error", error=type(exc).__name__, exc_info=exc)
            if not started_flag[0]:
                await internal_error(scope, receive, send_wrapper)
        finally:
            if path not in PROBES:
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                    db_statements=stats.count,
                )


def _component(path: str) -> str:
    """The feature a path belongs to, for log lines: `/v1/bookings/...` -> `bookings`."""
    parts = path.strip("/").split("/")
    if parts[0] == "v1" and len(parts) > 1:
        return parts[1]
    return parts[0] or "root"


# Reading and discarding the rest of an oversize body lets a client that writes its whole body
# before reading (httpx's default) see the 413: closing with unread data in the socket makes the
# kernel answer with a reset that destroys the response. Bounded, so it cannot be made to read
# forever; past the bound the connection is closed and such a client may see a reset.
DRAIN_MAX_BYTES = 64 * 1_048_576
DRAIN_MAX_SECONDS = 10.0


class BodyLimit:
    """Refuse bodies over the limit with 413 before they are read into memory, whether the
    client declares Content-Length or streams chunks. The rest of the body is drained (read and
    thrown away, bounded) before the answer, so the client reads the 413."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.overrides = overrides or {}

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope.get("path", ""))
        declared: int | None = None
        expects_continue = False
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif key == b"expect" and value.lower() == b"100-continue":
                expects_continue = True
        if declared is not None:
            if declared > limit:
                # A client waiting for 100 Continue has sent nothing yet: answer at once.
                if not expects_continue and declared <= DRAIN_MAX_BYTES:
                    await _drain(receive, declared)
                await _too_large(send, limit)
                return
            # The server enforces Content-Length framing, so the body cannot exceed it.
            await self.app(scope, receive, send)
            return
        # Chunked upload of unknown size: buffer up to the limit, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_MAX_BYTES - size)
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        await self.app(
            scope,
            _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive),
            send,
        )


async def _drain(receive: Receive, budget: int) -> None:
    """Read and discard the request body until it ends, `budget` bytes are read or time is up."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_MAX_SECONDS):
            while budget > 0:
                message = await receive()
                if message["type"] != "http.request":
                    return
                budget -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    return


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _too_large(send: Send, limit: int) -> None:
    body: dict[str, Any] = {
        "type": "https://atlilith.dev/problems/payload_too_large",
        "title": "Payload too large",
        "status": 413,
        "detail": f"the request body is larger than {limit} bytes",
        "code": "payload_too_large",
        "hint": "send less per request (split batches)",
        "trace_id": current_trace_id(),
    }
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def internal_error(scope: Scope, receive: Receive, send: Send) -> None:
    from servers.problems import problem_response

    response = problem_response(
        500,
        "internal_error",
        "Internal error",
        "something went wrong on our side; nothing was changed",
        hint="retry; if it persists, report the trace_id",
    )
    await response(scope, receive, send)
