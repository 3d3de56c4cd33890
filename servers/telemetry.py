"""OpenTelemetry wiring: the SDK, the OTLP exporter and the instrumentations, configured by the
standard `OTEL_*` environment. Core only uses the API (`core.observability`); this is the one
place that decides whether spans are recorded and where they go.

With no exporter configured nothing is installed: the API stays a no-op, requests still get a
trace id (echoed as `X-Trace-Id`) and log lines still carry it, at the price of a few objects.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from fastapi import FastAPI
from opentelemetry import trace as otel_trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from core import __version__
from core.observability import configure_propagation, get_logger, requested_trace_id
from servers.middleware import UNTRACED_PATHS

__all__ = ["JobTraceIds", "build_provider", "configure_tracing", "instrument", "instrument_app", "tracing_on"]

log = get_logger("atlilith.telemetry")


class JobTraceIds(RandomIdGenerator):
    """Random ids, except for a root span that must carry a given trace id: a job's spans use
    its job id (128 bits, the same UUID) as their trace id, so the id a caller gets back from
    `POST .../run` finds the job's trace and every log line of it."""

    def generate_trace_id(self) -> int:
        return requested_trace_id() or super().generate_trace_id()


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: an OTLP endpoint, or `OTEL_TRACES_EXPORTER`
    set to `otlp` or `console`; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` say no."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    if exporter:
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter(environ: Mapping[str, str]) -> SpanExporter:
    kind = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if kind == "console":
        # stderr: over stdio MCP, stdout belongs to the protocol.
        return ConsoleSpanExporter(out=sys.stderr)
    if kind != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={kind!r} is not supported here: use otlp, console or none")
    # OTLP over HTTP/protobuf (port 4318): endpoint, headers, timeout from OTEL_EXPORTER_OTLP_*.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def build_provider(processor: SpanProcessor, environ: Mapping[str, str] = os.environ) -> TracerProvider:
    """A tracer provider with the job-aware id generator. The sampler comes from
    `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default: parent-based, always on), the
    resource from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` (service name `atlilith`
    unless set)."""
    attributes: dict[str, str] = {"service.version": __version__}
    if not environ.get("OTEL_SERVICE_NAME") and "service.name=" not in environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "atlilith"
    provider = TracerProvider(resource=Resource.create(attributes), id_generator=JobTraceIds())
    provider.add_span_processor(processor)
    return provider


def instrument(provider: TracerProvider) -> None:
    """Spans for every SQL statement (asyncpg, statement text without parameters) and every
    outgoing httpx call (which also injects `traceparent`)."""
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)


def uninstrument() -> None:
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    HTTPXClientInstrumentor().uninstrument()


_configured: list[bool] = []


def configure_tracing(environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK when the environment asks for traces (once per process). Returns
    whether spans are recorded. Propagation (`traceparent`, then `X-Trace-Id`) is set either way."""
    configure_propagation()
    if _configured:
        return tracing_on()
    _configured.append(True)
    if not tracing_requested(environ):
        return False
    provider = build_provider(BatchSpanProcessor(_exporter(environ)), environ)
    otel_trace.set_tracer_provider(provider)
    instrument(provider)
    log.info("tracing_enabled", exporter=environ.get("OTEL_TRACES_EXPORTER", "otlp") or "otlp")
    return True


def tracing_on() -> bool:
    return isinstance(otel_trace.get_tracer_provider(), TracerProvider)


def instrument_app(app: FastAPI) -> None:
    """The request span (outermost, so it covers every middleware). Added only when spans are
    recorded: off, the request context's bare span costs less than the middleware's wrappers."""
    configure_propagation()
    if tracing_on():
        app.add_middleware(
            OpenTelemetryMiddleware,
            excluded_urls=",".join(UNTRACED_PATHS),
            exclude_spans=["receive", "send"],
        )
