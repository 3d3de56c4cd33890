"""A tool call's telemetry over HTTP when nothing records spans (issue 19): its log lines carry
the tool's fields under the request's trace and span ids, with no bare span of their own and no
SDK span per message, which nothing would record; a trace context the call carries in `_meta`
still parents it. With tracing on the tool's span is recorded as before
(`tests/servers/test_tracing.py::test_an_mcp_tool_call_over_http_is_recorded_in_the_requests_trace`)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
import structlog

from core.observability import add_trace_ids
from core.uow import Database
from servers.app import create_app
from servers.mcp import SpansWhenRecorded
from tests.conftest import Account, running, signup
from tests.support.request_path import MCP_POST_HEADERS, own_database

PROTOCOL = "2026-07-28"


def _whoami(**meta: str) -> dict[str, Any]:
    """A `whoami` call as the SDK's client makes it by default (2026-07-28), plus `meta`."""
    envelope = {
        "io.modelcontextprotocol/protocolVersion": PROTOCOL,
        "io.modelcontextprotocol/clientCapabilities": {},
        **meta,
    }
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "whoami", "arguments": {}, "_meta": envelope},
    }


def _headers(account: Account) -> dict[str, str]:
    routing = {"MCP-Protocol-Version": PROTOCOL, "Mcp-Method": "tools/call", "Mcp-Name": "whoami"}
    return {**MCP_POST_HEADERS, **routing, **account.h()}


class _Counted:
    """Stands in for the SDK's per-message span middleware, counting the messages it wraps."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, 0

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        self.calls += 1
        return await self.inner(ctx, call_next)


@pytest.fixture
async def served(db: Database) -> AsyncIterator[tuple[httpx.AsyncClient, _Counted]]:
    """The app with stateless MCP, as the bench server runs it, and a count of the SDK's spans."""
    async with own_database(db) as database:
        application = create_app(database.settings, db=database, run_relay=False)
        gate = application.state.mcp.middleware[0]
        assert isinstance(gate, SpansWhenRecorded)
        gate.sdk_span = counted = _Counted(gate.sdk_span)
        async with running(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as c:
                yield c, counted


def _lines(logs: Sequence[Mapping[str, Any]]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    requests = [e for e in logs if e["event"] == "request" and e.get("path") == "/mcp"]
    calls = [e for e in logs if e["event"] == "tool_call"]
    assert len(requests) == 1 and len(calls) == 1, logs
    return requests[0], calls[0]


async def test_a_tool_call_logs_under_the_requests_span(served: tuple[httpx.AsyncClient, _Counted]) -> None:
    client, sdk_spans = served
    a = await signup(client)
    # As the app's logging runs them: context variables, then the active span's ids.
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, add_trace_ids]
    ) as logs:
        r = await client.post("/mcp", json=_whoami(), headers=_headers(a))
    assert r.status_code == 200 and r.json()["result"]["isError"] is False, r.text
    request, call = _lines(logs)
    assert (call["tool"], call["component"], call["action"], call["outcome"]) == (
        "whoami",
        "tenancy",
        "whoami",
        "ok",
    )
    assert call["trace_id"] == request["trace_id"] == r.headers["x-trace-id"]
    # No span of its own (nothing would record it): the request's span id.
    assert call["span_id"] == request["span_id"]
    assert sdk_spans.calls == 0


async def test_a_trace_context_in_the_calls_meta_still_parents_it(
    served: tuple[httpx.AsyncClient, _Counted],
) -> None:
    client, sdk_spans = served
    a = await signup(client)
    caller = uuid.uuid4().hex
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, add_trace_ids]
    ) as logs:
        r = await client.post(
            "/mcp", json=_whoami(traceparent=f"00-{caller}-{'4' * 16}-01"), headers=_headers(a)
        )
    assert r.status_code == 200 and r.json()["result"]["isError"] is False, r.text
    request, call = _lines(logs)
    # The SDK's span continues the caller's trace from `_meta`, and the tool runs inside it.
    assert sdk_spans.calls == 1
    assert call["trace_id"] == caller != request["trace_id"]
