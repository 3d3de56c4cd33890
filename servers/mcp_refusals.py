"""How the MCP door words a refusal the SDK makes with its validator's report."""

from __future__ import annotations

import json

from mcp.types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PlainRefusals"]


class PlainRefusals:
    """The handshake-era transport refuses a body that is no JSON-RPC message (`[]`, a batch,
    `{"foo": 1}`) with pydantic's report as its message: the validator's internals, the input
    echoed, links to its docs. Reworded as the 2026-07-28 entry words the same refusal; the
    SDK's check still decides what is refused."""

    REWORDED = "Body must be a single JSON-RPC request or notification object"

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def reworded(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 400:
                held.append(message)
                return
            if held and message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body", False):
                    return
                for out in _reworded(held):
                    await send(out)
                held.clear()
                return
            await send(message)

        await self.app(scope, receive, reworded)
        for out in held:  # a body that never ended: what was held goes out as it was
            await send(out)


def _reworded(messages: list[Message]) -> list[Message]:
    start, *parts = messages
    body = b"".join(p.get("body", b"") for p in parts)
    try:
        answer = json.loads(body)
        error = answer["error"]
        refused = isinstance(error["message"], str) and error["message"].startswith("Validation error:")
    except (ValueError, KeyError, TypeError):
        refused = False
    if not refused:
        return messages
    error.update(code=INVALID_REQUEST, message=PlainRefusals.REWORDED)
    error.pop("data", None)
    new = json.dumps(answer, separators=(",", ":")).encode()
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(new)).encode()))
    return [{**start, "headers": headers}, {"type": "http.response.body", "body": new}]
