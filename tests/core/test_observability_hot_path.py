"""What every request pays for its span and its log line. Spans without an SDK (every
request's while no exporter is configured): bare span contexts made without the API's no-op
tracer, ids formatted once per span for all its log lines, log fields put back as they were
after the block. Loggers assembled once per logging configuration, and again at once when it
changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry import trace as otel_trace
from opentelemetry.trace import TraceFlags

from core.observability import add_trace_ids, current_trace_id, get_logger, trace

HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def no_sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No provider set, and the API's no-op tracer out of bounds: a span must not go through it."""
    assert isinstance(otel_trace.get_tracer_provider(), otel_trace.ProxyTracerProvider)

    def refuse(*_: Any, **__: Any) -> otel_trace.Span:
        raise AssertionError("the no-op tracer was asked for a span")

    monkeypatch.setattr(otel_trace.NoOpTracer, "start_span", refuse)
    yield


def _active() -> otel_trace.SpanContext:
    return otel_trace.get_current_span().get_span_context()


def test_without_an_sdk_a_span_is_a_bare_context_continuing_its_parent(no_sdk: None) -> None:
    job = "0af7651916cd43dd8448eb211c80319c"
    with trace(name="request") as outer:
        assert HEX32.fullmatch(outer) and current_trace_id() == outer
        parent = _active()
        assert parent.trace_flags == TraceFlags.SAMPLED
        with trace(name="inner") as inner:
            assert inner == outer and _active().span_id != parent.span_id
        with trace(job, name="job") as started:
            assert started == job  # a job's trace id is its job id, whatever the parent
        with trace(name="probe", record=False):
            assert _active().trace_flags == TraceFlags(0)
        assert _active() == parent
    assert current_trace_id() is None


def test_a_spans_ids_are_formatted_once_for_all_its_log_lines(
    no_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    formatted: list[int] = []
    original = otel_trace.format_trace_id

    def counting(trace_id: int) -> str:
        formatted.append(trace_id)
        return original(trace_id)

    monkeypatch.setattr(otel_trace, "format_trace_id", counting)
    with trace(name="request") as tid:
        lines = [add_trace_ids(None, "info", {"event": f"line {i}"}) for i in range(3)]
    assert [line["trace_id"] for line in lines] == [tid] * 3
    assert len(formatted) == 1


def test_log_fields_are_put_back_as_they_were_after_the_block(no_sdk: None) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(component="outer", kept="yes")
    try:
        with trace(name="request", component="inner", action="act") as tid:
            inside = structlog.contextvars.get_contextvars()
            assert inside["component"] == "inner" and inside["action"] == "act" and inside["kept"] == "yes"
            assert inside["trace_id"] == tid and len(inside["span_id"]) == 16
        assert structlog.contextvars.get_contextvars() == {"component": "outer", "kept": "yes"}
    finally:
        structlog.contextvars.clear_contextvars()


@pytest.fixture
def logging_config() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_a_logger_is_assembled_once_per_logging_configuration(logging_config: None) -> None:
    made: list[tuple[Any, ...]] = []

    def factory(*args: Any) -> structlog.ReturnLogger:
        made.append(args)
        return structlog.ReturnLogger()

    structlog.configure(processors=[structlog.processors.KeyValueRenderer()], logger_factory=factory)
    log = get_logger("atlilith.test")
    assert [log.info("line", n=n) for n in range(3)] == [f"n={n} event='line'" for n in range(3)]
    assert len(made) == 1
    # A capture configures other processors (in place): seen at once, and gone after it.
    with structlog.testing.capture_logs() as captured:
        log.info("captured", n=3)
    assert captured == [{"n": 3, "event": "captured", "log_level": "info"}]
    # A new configuration: the logger is assembled anew.
    structlog.configure(processors=[structlog.processors.JSONRenderer()])
    assert log.info("again", n=4) == '{"n": 4, "event": "again"}'
    assert len(made) == 2
