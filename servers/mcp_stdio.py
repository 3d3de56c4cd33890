"""MCP over stdio: the SDK's transport, with a reply to every line it can't read, and the
requests already read answered before the session ends.

The SDK's stdin reader hands a line that is not a JSON-RPC message to the server as an
exception, and the server only logs it: the client waits for an answer that never comes. Here
such a line is answered as JSON-RPC 2.0 says, with id null: -32700 when it is not JSON, -32600
when it is JSON but no message. A blank line between messages is no message and is passed over.

When stdin closes, the SDK cancels the requests still running. A client that writes its
requests and closes its end (`printf ... | atlilith mcp`) then got no answers, and a query
cancelled mid-flight made asyncpg open a cancel connection whose failure nobody awaited
("Future exception was never retrieved ... unexpected connection_lost() call", asyncpg #1310).
So the end of stdin reaches the server only once every request read has been answered (or
cancelled by the client), or after `DRAIN_SECONDS`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp.types import (
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
)
from pydantic import ValidationError

__all__ = ["DRAIN_SECONDS", "refusal", "serve_stdio"]

DRAIN_SECONDS = 30.0
"""How long requests still running when stdin closes may take to be answered; past it they are
cancelled, as the SDK would have at once (one waiting on the client can't be answered)."""

Item = SessionMessage | Exception


class _Pending:
    """The ids of the requests read and not yet answered."""

    def __init__(self) -> None:
        self.ids: set[Any] = set()
        self.none = anyio.Event()
        self.none.set()

    def add(self, request_id: Any) -> None:
        if not self.ids:
            self.none = anyio.Event()
        self.ids.add(request_id)

    def discard(self, request_id: Any) -> None:
        self.ids.discard(request_id)
        if not self.ids:
            self.none.set()


async def serve_stdio(server: Server[Any]) -> None:
    """Serve one MCP session over this process's stdin and stdout until stdin closes."""
    pending = _Pending()
    async with stdio_server() as (lines, replies):
        passed, read = anyio.create_memory_object_stream[Item](0)
        answers, written = anyio.create_memory_object_stream[SessionMessage](0)
        async with anyio.create_task_group() as tg:
            # The writer ends when the session closes its answers, after the last one.
            tg.start_soon(_write, written, replies, pending)
            async with anyio.create_task_group() as reading:
                reading.start_soon(_read, lines, passed, replies, pending)
                await server.run(read, answers, server.create_initialization_options())
                reading.cancel_scope.cancel()  # the session ended before stdin did


async def _read(lines: Any, passed: ObjectSendStream[Item], replies: Any, pending: _Pending) -> None:
    async with passed:
        async for item in lines:
            if isinstance(item, Exception):
                if (answer := refusal(item)) is not None:
                    # The session closes the replies as it ends; a refusal then reaches no one.
                    with suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                        await replies.send(SessionMessage(answer))
                continue
            message = item.message
            if isinstance(message, JSONRPCRequest):
                pending.add(message.id)
            elif isinstance(message, JSONRPCNotification) and message.method == "notifications/cancelled":
                pending.discard((message.params or {}).get("requestId"))
            try:
                await passed.send(item)
            except anyio.BrokenResourceError:
                return  # the session ended: nothing reads messages any more
        with anyio.move_on_after(DRAIN_SECONDS):
            await pending.none.wait()


async def _write(written: ObjectReceiveStream[SessionMessage], replies: Any, pending: _Pending) -> None:
    async with replies, written:
        async for item in written:
            if isinstance(item.message, JSONRPCResponse | JSONRPCError):
                pending.discard(item.message.id)
            await replies.send(item)


def refusal(error: Exception) -> JSONRPCError | None:
    """The reply to a line the transport could not read as a message (None for a blank one)."""
    issues = error.errors() if isinstance(error, ValidationError) else []
    if issues and all(i["type"] == "json_invalid" for i in issues):
        if not str(issues[0].get("input", "x")).strip():
            return None
        problem = ErrorData(code=PARSE_ERROR, message="Parse error")
    else:
        problem = ErrorData(code=INVALID_REQUEST, message="Invalid Request")
    return JSONRPCError(jsonrpc="2.0", id=None, error=problem)
