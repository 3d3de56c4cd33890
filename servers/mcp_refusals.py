"""How the MCP door words the refusals the SDK makes: a body its validator refused, and a
credential missing or refused."""

from __future__ import annotations

import json
from contextvars import ContextVar

from mcp.types import INVALID_REQUEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import DomainError
from servers.hints import for_rest

__all__ = ["NamedAuthRefusals", "PlainRefusals", "note_refusal"]

# Why the token verifier refused this request's credential (`CoreTokenVerifier`): a box set
# per request, so the refusal reaches the response whatever context the SDK verified it in.
_refused: ContextVar[list[DomainError] | None] = ContextVar("atlilith_mcp_refused", default=None)


def note_refusal(error: DomainError) -> None:
    if (box := _refused.get()) is not None:
        box.append(error)


class NamedAuthRefusals:
    """The SDK answers every 401 "Authentication required", whether no credential came or one
    was refused. Said as the REST door says it (`servers.problems`): a refused credential is
    `error="invalid_token"` with the refusal's code as `error_description` (`token_invalid`,
    `account_suspended`, ...); no credential at all carries no error code (RFC 6750, 3.1), only
    where to start OAuth (`resource_metadata`). The SDK's check still decides what is refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        box: list[DomainError] = []
        token = _refused.set(box)
        # What the SDK takes for a credential: a Bearer one (another scheme counts as none).
        sent_credential = any(
            k.lower() == b"authorization" and v[:7].lower() == b"bearer " and v[7:].strip()
            for k, v in scope.get("headers", ())
        )
        named: list[bytes] = []  # the reworded body, once the 401 has started

        async def reworded(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                headers, body = _named(message, sent_credential, box[0] if box else None)
                named.append(body)
                await send({**message, "headers": headers})
            elif named and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": named[0]})
            else:
                await send(message)

        try:
            await self.app(scope, receive, reworded)
        finally:
            _refused.reset(token)


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


def _named(
    start: Message, sent_credential: bool, refusal: DomainError | None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The 401's headers and body, named for what was wrong."""
    old = [
        (k, v)
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-length", b"www-authenticate")
    ]
    metadata = next(
        (
            part.strip()
            for k, v in start.get("headers", [])
            if k.lower() == b"www-authenticate"
            for part in v.decode("latin-1").removeprefix("Bearer ").split(",")
            if part.strip().startswith("resource_metadata=")
        ),
        None,
    )
    if not sent_credential:
        parts = [metadata] if metadata else []
        answer = {
            "code": "missing_credential",
            "message": "no credential was sent",
            "hint": "send `Authorization: Bearer <access token or API key>`, or sign in through OAuth",
        }
    else:
        code = refusal.code if refusal else "token_invalid"
        parts = ['error="invalid_token"', f'error_description="{code}"', *([metadata] if metadata else [])]
        answer = {
            "error": "invalid_token",
            "code": code,
            "message": refusal.message if refusal else "the credential was refused",
        }
        if hint := for_rest(refusal.hint if refusal else None):
            answer["hint"] = hint
    body = json.dumps(answer, separators=(",", ":")).encode()
    header = ("Bearer " + ", ".join(parts)) if parts else "Bearer"
    return [*old, (b"www-authenticate", header.encode()), (b"content-length", str(len(body)).encode())], body
