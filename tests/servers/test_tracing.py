"""Traces: with the OpenTelemetry SDK recording into memory, a REST hold reads as one trace from
the request through its SQL, the outbox row and the handler; a job's spans and log lines carry
its job id as trace id; MCP tool calls get a span that names the tool and carries no token."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import pytest
import structlog
from mcp import Client
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from core.bookings import send_due_reminders
from core.observability import add_trace_ids, trace
from core.relay import Relay
from core.uow import Database
from servers import telemetry
from servers.mcp import build_server
from tests.conftest import Account, running, signup
from tests.core.bookings.helpers import admin, at, day_ahead, hold, make_service, set_hours
from tests.support.billing import grant, make_admin
from tests.support.messaging import FakePeer, inbound, messaging_database
from tests.support.registry import install
from tests.support.serving import app_client


def _reset_provider() -> None:
    # The API lets a process set its provider once; tests set and unset one of their own.
    otel_trace._TRACER_PROVIDER_SET_ONCE = Once()
    otel_trace._TRACER_PROVIDER = None


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK installed as `servers.telemetry` does it, recording into memory."""
    exporter = InMemorySpanExporter()
    provider = telemetry.build_provider(SimpleSpanProcessor(exporter))
    _reset_provider()
    otel_trace.set_tracer_provider(provider)
    telemetry.instrument(provider)
    try:
        yield exporter
    finally:
        telemetry.uninstrument()
        provider.shutdown()
        _reset_provider()


@pytest.fixture
async def traced(spans: InMemorySpanExporter, db: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app built while tracing is on (so with the ASGI instrumentation)."""
    async with app_client(db) as c:
        yield c


@pytest.fixture
async def holding(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter, db: Database
) -> tuple[Account, httpx.Response]:
    """A person with working hours and a service, set up through `traced`, and their hold's
    response: the first request the recorded spans hold."""
    owner = await signup(traced)
    await set_hours(traced, owner)
    service = await make_service(traced, owner)
    await Relay(db).drain()  # what set-up emitted is handled before we look
    spans.clear()
    start = at(day_ahead(6), "10:00")
    return owner, await hold(
        traced, owner, service_id=service["id"], start_at=start, client_email="c@example.com"
    )


def _hex(value: int) -> str:
    return otel_trace.format_trace_id(value)


def in_trace(exporter: InMemorySpanExporter, trace_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context and _hex(s.context.trace_id) == trace_id]


def by_id(found: Sequence[ReadableSpan]) -> dict[int, ReadableSpan]:
    return {s.context.span_id: s for s in found if s.context}


def ancestors(span: ReadableSpan, index: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain: list[ReadableSpan] = []
    while span.parent is not None and span.parent.span_id in index:
        span = index[span.parent.span_id]
        chain.append(span)
    return chain


def is_sql(span: ReadableSpan) -> bool:
    attributes = span.attributes or {}
    return "postgresql" in {attributes.get("db.system"), attributes.get("db.system.name")}


async def test_a_rest_hold_reads_as_one_trace_through_the_outbox_to_its_handler(
    traced: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    db: Database,
    holding: tuple[Account, httpx.Response],
) -> None:
    owner, held = holding
    trace_id = held.headers["x-trace-id"]
    # The outbox row keeps the span that emitted it, in the request's trace.
    rows = await admin(
        db,
        "SELECT traceparent, trace_id FROM platform.outbox WHERE name = 'bookings/booking.held'"
        " AND data->>'booking_id' = :b",
        {"b": held.json()["id"]},
    )
    assert len(rows) == 1 and rows[0].trace_id == trace_id and rows[0].traceparent.split("-")[1] == trace_id

    request_spans = in_trace(spans, trace_id)
    servers = [s for s in request_spans if s.kind is SpanKind.SERVER]
    assert len(servers) == 1 and (servers[0].attributes or {}).get("http.request.method", "POST") == "POST"
    index = by_id(request_spans)
    request_sql = [s for s in request_spans if is_sql(s)]
    assert request_sql and all(servers[0] in ancestors(s, index) for s in request_sql)
    emitting = int(rows[0].traceparent.split("-")[2], 16)
    assert emitting in index  # a span of the request emitted the event

    await Relay(db).drain()
    everything = in_trace(spans, trace_id)
    index = by_id(everything)
    handlers = [s for s in everything if s.name == "handle bookings/booking.held"]
    assert handlers, [s.name for s in everything]
    analytics = [
        h for h in handlers if (h.attributes or {}).get("atlilith.handler") == "analytics.record_domain_event"
    ]
    assert len(analytics) == 1
    handler = analytics[0]
    assert handler.kind is SpanKind.CONSUMER and handler.parent is not None
    assert handler.parent.span_id == emitting and servers[0] in ancestors(handler, index)
    # The handler's own SQL is its child, in the same trace.
    assert any(handler in ancestors(s, index) for s in everything if is_sql(s))

    # Confirming is a request of its own: its booking.confirmed handlers join its trace.
    confirmed = await traced.post(f"/v1/bookings/{held.json()['id']}/confirm", json={}, headers=owner.h())
    assert confirmed.status_code == 200, confirmed.text
    await Relay(db).drain()
    confirm_spans = in_trace(spans, confirmed.headers["x-trace-id"])
    index = by_id(confirm_spans)
    server = next(s for s in confirm_spans if s.kind is SpanKind.SERVER)
    mapped = [s for s in confirm_spans if s.name == "handle bookings/booking.confirmed"]
    assert mapped and all(server in ancestors(s, index) for s in mapped)


async def test_a_reminder_sent_later_by_a_sweep_continues_the_confirms_trace(
    traced: httpx.AsyncClient,
    spans: InMemorySpanExporter,
    db: Database,
    holding: tuple[Account, httpx.Response],
) -> None:
    owner, held = holding
    confirmed = await traced.post(f"/v1/bookings/{held.json()['id']}/confirm", json={}, headers=owner.h())
    assert confirmed.status_code == 200, confirmed.text
    confirm_trace = confirmed.headers["x-trace-id"]
    await Relay(db).drain()

    # Days later a sweep, in a trace of its own, finds the booking due.
    with trace(name="schedule bookings.reminders") as sweep_trace:
        async with db.system() as uow:
            assert await send_due_reminders(uow, dt.timedelta(days=8)) >= 1  # other tests' bookings too
    assert sweep_trace != confirm_trace
    rows = await admin(
        db,
        "SELECT trace_id, traceparent FROM platform.outbox WHERE name = 'bookings/booking.reminder_due'"
        " AND data->>'booking_id' = :b",
        {"b": held.json()["id"]},
    )
    assert len(rows) == 1 and rows[0].trace_id == confirm_trace
    assert rows[0].traceparent.split("-")[1] == confirm_trace
    await Relay(db).drain()
    story = in_trace(spans, confirm_trace)
    index = by_id(story)
    server = next(s for s in story if s.kind is SpanKind.SERVER)
    reminders = [s for s in story if s.name == "handle bookings/booking.reminder_due"]
    assert reminders, sorted({s.name for s in story})
    assert all(server in ancestors(s, index) for s in reminders)


async def test_a_jobs_spans_and_log_lines_carry_its_job_id_as_trace_id(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter, db: Database
) -> None:
    admin_account, a = await make_admin(traced), await signup(traced, "job")
    await grant(traced, admin_account, 5, person=a.slug)
    await install(traced, a, "identity")
    caller = uuid.uuid4().hex
    headers = {**a.h(), "traceparent": f"00-{caller}-{'2' * 16}-01"}
    run = {"input": {"email": "who@example.com"}}
    first = await traced.post("/v1/run/identity/resolve-person", json=run, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["job_id"] == str(uuid.UUID(caller))  # the job continues the caller's trace
    # The same traceparent again: that trace id is taken, so this job gets an id — and a trace —
    # of its own, linked to the request that ran it.
    with structlog.testing.capture_logs(
        processors=[structlog.contextvars.merge_contextvars, add_trace_ids]
    ) as logs:
        second = await traced.post("/v1/run/identity/resolve-person", json=run, headers=headers)
        assert second.status_code == 202, second.text
        job_id = second.json()["job_id"]
        job_trace = uuid.UUID(job_id).hex
        assert job_trace != caller and second.json()["trace_id"] == job_trace
        await Relay(db).drain()
    done = await traced.get(f"/v1/jobs/{job_id}", headers=a.h())
    assert done.json()["status"] == "succeeded", done.text

    job_spans = in_trace(spans, job_trace)
    names = {s.name for s in job_spans}
    assert {"handle jobs/job.queued", "job execute"} <= names, names
    roots = [s for s in job_spans if s.parent is None]
    assert len(roots) == 1 and any(_hex(link.context.trace_id) == caller for link in roots[0].links)
    assert any(is_sql(s) for s in job_spans)
    span_ids = {otel_trace.format_span_id(s.context.span_id) for s in job_spans if s.context}

    # Queued by a request of another trace, the job says which trace is its own.
    queued = [e for e in logs if e.get("event") == "job_queued" and e.get("job_id") == job_id]
    assert len(queued) == 1 and queued[0]["job_trace_id"] == job_trace and queued[0]["trace_id"] == caller
    lines = [e for e in logs if e.get("job_id") == job_id and e["event"] != "job_queued"]
    assert {e["event"] for e in lines} >= {"job_started", "job_succeeded"}, lines
    assert all(e["trace_id"] == job_trace for e in lines), [(e["event"], e["trace_id"]) for e in lines]
    assert all(e["span_id"] in span_ids for e in lines)


async def test_log_lines_carry_the_active_spans_ids(spans: InMemorySpanExporter) -> None:
    with (
        structlog.testing.capture_logs(processors=[add_trace_ids]) as logs,
        trace(name="outer") as outer_trace,
    ):
        structlog.get_logger().info("outer_line")
        with trace(name="inner"):
            structlog.get_logger().info("inner_line")
    finished = {s.name: s for s in spans.get_finished_spans()}
    outer, inner = finished["outer"], finished["inner"]
    assert (
        inner.parent is not None
        and outer.context is not None
        and inner.parent.span_id == outer.context.span_id
    )
    by_event = {e["event"]: e for e in logs}
    assert by_event["outer_line"]["span_id"] == otel_trace.format_span_id(outer.context.span_id)
    assert inner.context is not None
    assert by_event["inner_line"]["span_id"] == otel_trace.format_span_id(inner.context.span_id)
    assert by_event["inner_line"]["trace_id"] == by_event["outer_line"]["trace_id"] == outer_trace


async def test_an_mcp_tool_call_span_names_the_tool_and_never_the_token(
    client: httpx.AsyncClient, spans: InMemorySpanExporter, db: Database
) -> None:
    a = await signup(client, "tool")
    spans.clear()
    async with Client(build_server(db, static_token=a.token)) as c:
        result = await c.call_tool("whoami", {})
    assert not result.is_error
    calls = [s for s in spans.get_finished_spans() if s.name == "tool whoami"]
    assert len(calls) == 1
    attributes: dict[str, Any] = dict(calls[0].attributes or {})
    assert attributes["gen_ai.tool.name"] == "whoami" and attributes["atlilith.toolset"] == "tenancy"
    assert attributes["atlilith.context.kind"] == "personal"
    assert calls[0].context is not None
    trace_spans = in_trace(spans, _hex(calls[0].context.trace_id))
    assert any(is_sql(s) for s in trace_spans)  # the call's SQL is in its trace
    for span in trace_spans:
        for value in (span.attributes or {}).values():
            assert a.token not in str(value) and a.token.split(".")[-1] not in str(value), span.name


async def test_an_mcp_tool_call_over_http_is_recorded_in_the_requests_trace(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    """With tracing on, an HTTP tool call keeps its span, in the request's trace; with tracing
    off none is started (`tests/tools/test_tool_telemetry.py`)."""
    a = await signup(traced, "httptool")
    spans.clear()
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "whoami",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "whoami",
        **a.h(),
    }
    r = await traced.post("/mcp", json=call, headers=headers)
    assert r.status_code == 200 and r.json()["result"]["isError"] is False, r.text
    found = in_trace(spans, r.headers["x-trace-id"])
    # (The SDK's span is recorded too, by the provider its module-level tracer met first: in
    # this module, an earlier test's, shut down since.)
    tools = [s for s in found if s.name == "tool whoami"]
    assert len(tools) == 1 and tools[0].parent is not None
    assert dict(tools[0].attributes or {})["atlilith.context.kind"] == "personal"
    assert any(is_sql(s) for s in found)


async def test_without_an_exporter_nothing_is_recorded_and_requests_still_get_a_trace_id(
    client: httpx.AsyncClient,
) -> None:
    assert not telemetry.tracing_on() and not telemetry.tracing_requested({})
    assert telemetry.tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert not telemetry.tracing_requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    caller = uuid.uuid4().hex
    r = await client.get("/v1/me", headers={"traceparent": f"00-{caller}-{'3' * 16}-01"})
    assert r.headers["x-trace-id"] == caller
    bare = await client.get("/v1/me")
    assert len(bare.headers["x-trace-id"]) == 32 and bare.headers["x-trace-id"] != caller


async def test_draft_generation_spans_carry_sizes_never_text_and_the_peer_joins_the_trace(
    spans: InMemorySpanExporter, db: Database
) -> None:
    async with messaging_database(db) as database, app_client(database) as mc, FakePeer() as peer:
        owner = await signup(mc, "draft")
        h = owner.h()
        configured = await mc.put(
            "/v1/messaging/settings", json={"draft_peer_url": peer.url("/draft")}, headers=h
        )
        assert configured.status_code == 200, configured.text
        private = "my private question about Monday"
        got = await inbound(
            mc,
            h,
            channel="portal",
            external_id="t1",
            client_name="Zed",
            subject="a secret subject",
            body=private,
        )
        thread_id = got["results"][0]["thread_id"]
        spans.clear()
        made = await mc.post(
            f"/v1/messaging/threads/{thread_id}/drafts/generate",
            json={"instructions": "brief"},
            headers=h,
        )
        assert made.status_code == 201, made.text
    trace_id = made.headers["x-trace-id"]
    sent = peer.received[0]
    _, peer_trace, peer_parent, _ = sent.headers["traceparent"].split("-")
    assert peer_trace == trace_id  # what an LLM-tracing tool at the peer joins on

    found = in_trace(spans, trace_id)
    index = by_id(found)
    prompt = next(s for s in found if s.name == "draft prompt")
    assert (
        dict(prompt.attributes or {}).items()
        >= {
            "atlilith.prompt.messages": 1,
            "atlilith.prompt.bytes": len(sent.raw),
            "atlilith.prompt.history_chars": len(private),
            "atlilith.prompt.truncated": False,
        }.items()
    )
    call = next(s for s in found if s.name == "draft peer call")
    assert call.kind is SpanKind.CLIENT
    assert (
        dict(call.attributes or {}).items()
        >= {
            "atlilith.outcome": "answered",
            "http.response.status_code": 200,
            "atlilith.reply.chars": len(made.json()["body"]),
            "gen_ai.response.model": "fake-1",
        }.items()
    )
    latency = (call.attributes or {})["atlilith.peer.latency_ms"]
    assert isinstance(latency, int) and latency >= 0
    # The peer's parent span is the call (or the HTTP client span inside it).
    sender = index[int(peer_parent, 16)]
    assert sender is call or call in ancestors(sender, index)
    for span in found:
        for value in (span.attributes or {}).values():
            assert "private question" not in str(value) and "secret subject" not in str(value), span.name


async def test_the_inngest_path_carries_the_emitting_span_to_the_function_run(
    spans: InMemorySpanExporter, db: Database
) -> None:
    import datetime as dt
    import hashlib

    import inngest

    from core.outbox import Event
    from servers.app import create_app
    from servers.inngest import InngestSink

    emitter = f"00-{uuid.uuid4().hex}-{'4' * 16}-01"

    class Recorder:
        sent: list[inngest.Event] = []

        async def send(self, events: list[inngest.Event]) -> None:
            self.sent.extend(events)

    recorder = Recorder()
    stored = Event(uuid.uuid4(), "test/probe.inngest", {"n": 1}, dt.datetime.now(dt.UTC), emitter)
    await InngestSink(recorder).publish([stored])  # type: ignore[arg-type]
    assert recorder.sent[0].data == {"n": 1, "traceparent": emitter}

    # The executor calls the served function with that event: the run's span continues it.
    settings = db.settings.model_copy(update={"inngest_dev": True, "inngest_event_key": "k-test"})
    app = create_app(settings, db=db, run_relay=False)
    event = {
        "id": str(stored.id),
        "name": stored.name,
        "data": recorder.sent[0].data,
        "ts": 1_700_000_000_000,
    }
    run = {
        "ctx": {
            "run_id": "run-t",
            "attempt": 0,
            "max_attempts": 3,
            "disable_immediate_execution": False,
            "stack": {"stack": []},
        },
        "event": event,
        "events": [event],
        "steps": {},
        "use_api": False,
    }
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        first = await c.post("/api/inngest?fnId=atlilith-tests-record&stepId=step", json=run)
        assert first.status_code == 206, first.text
        assert first.json()[0]["id"] == hashlib.sha1(b"handle").hexdigest()
    handled = [s for s in spans.get_finished_spans() if s.name == "handle test/probe.inngest"]
    assert len(handled) == 1 and handled[0].parent is not None and handled[0].context is not None
    assert _hex(handled[0].context.trace_id) == emitter.split("-")[1]
    assert otel_trace.format_span_id(handled[0].parent.span_id) == "4" * 16


async def test_health_probes_get_a_trace_id_but_record_no_spans(
    traced: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    r = await traced.get("/health")
    assert r.status_code == 200 and len(r.headers["x-trace-id"]) == 32
    recorded = in_trace(spans, r.headers["x-trace-id"])
    assert not [s for s in recorded if s.kind is SpanKind.SERVER or is_sql(s)], [s.name for s in recorded]
