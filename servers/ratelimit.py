"""The rate limits of every HTTP door (REST, /mcp, pages), applied before routing: a refused
MCP call is an HTTP 429 before the MCP layer sees it. The policies live in `core.ratelimit`."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import DomainError
from core.ratelimit import RateLimits, policy_header, state_header
from servers.problems import domain_problem
from servers.public.render import too_many

__all__ = ["PUBLIC_FORM_PREFIXES", "PUBLIC_PAGE_PREFIXES", "SIGNIN_PATHS", "RateLimit"]

# Where a password is tried or an account made: the strict per-address `signin` policy.
SIGNIN_PATHS = frozenset({"/v1/auth/signup", "/v1/auth/login", "/register", "/token"})
# The public pages' forms (servers.public): a booking or a change made by an anonymous visitor,
# counted against the per-address `public` policy (as strict as `signin`, its own bucket).
PUBLIC_FORM_PREFIXES = ("/book/", "/manage/", "/c/")
# Pages a person reads in a browser (servers.public): refused with a page, never problem JSON.
PUBLIC_PAGE_PREFIXES = (*PUBLIC_FORM_PREFIXES, "/site/")
# Liveness probes, and the Inngest executor (signed, and as fast as the events are).
EXEMPT_PREFIXES = ("/health", "/api/inngest")


class RateLimit:
    def __init__(self, app: ASGIApp, *, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not self.limits.enabled or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        authorization, forwarded_for = _read_headers(scope)
        client = scope.get("client")
        posted = scope.get("method") == "POST"
        verdict = await self.limits.check(
            address=self.limits.address(client[0] if client else None, forwarded_for),
            authorization=authorization,
            signin=posted and path.rstrip("/") in SIGNIN_PATHS,
            public=posted and path.startswith(PUBLIC_FORM_PREFIXES),
        )
        fields = [
            (b"ratelimit-policy", policy_header(verdict.standings).encode()),
            (b"ratelimit", state_header(verdict.standings).encode()),
        ]
        if not verdict.allowed:
            # Read the body first: a client that writes it all before reading (httpx does)
            # would otherwise see a reset connection instead of the 429.
            body = await _drain(receive)
            error = verdict.error()
            if path.startswith("/mcp"):
                response = _mcp_refusal(error, body)
            elif path.rstrip("/") in OAUTH_PATHS:
                response = _oauth_refusal(error)
            elif path.startswith(PUBLIC_PAGE_PREFIXES):
                response = too_many(Request(scope), error)
            else:
                response = domain_problem(error)
            response.raw_headers.extend(fields)
            await response(scope, receive, send)
            return

        async def send_with_fields(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *fields]
            await send(message)

        await self.app(scope, receive, send_with_fields)


def _read_headers(scope: Scope) -> tuple[str | None, str | None]:
    """`Authorization` and `X-Forwarded-For`, the last of each when repeated (as a dict of all
    the headers would keep); only these two are decoded."""
    authorization: str | None = None
    forwarded_for: str | None = None
    for key, value in scope.get("headers", ()):
        name = key.lower()
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"x-forwarded-for":
            forwarded_for = value.decode("latin-1")
    return authorization, forwarded_for


async def _drain(receive: Receive) -> bytes:
    """The request body (already bounded by the body limit outside this middleware)."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


# The OAuth endpoints, whose clients read an `error` member (RFC 6749 5.2) before anything else.
OAUTH_PATHS = ("/token", "/register", "/revoke", "/authorize")


def _oauth_refusal(error: DomainError) -> Response:
    """The problem document, with the OAuth error members an OAuth client library reads:
    `temporarily_unavailable`, the word RFC 6749 has for "come back later"."""
    problem = domain_problem(error)
    body = json.loads(bytes(problem.body))
    description = f"{error.message}; {error.hint}" if error.hint else error.message
    body |= {"error": "temporarily_unavailable", "error_description": description}
    kept = {k: v for k, v in problem.headers.items() if k.lower() not in ("content-length", "content-type")}
    return JSONResponse(body, status_code=error.status, headers=kept, media_type=problem.media_type)


def _mcp_refusal(error: DomainError, body: bytes) -> Response:
    """On /mcp the 429 speaks the endpoint's protocol, as the SDK's own HTTP errors do: a
    JSON-RPC error answering the request's id, so MCP clients show its message and hint
    (the Python SDK surfaces it as the call's error; the TypeScript SDK includes the body in
    its HTTP error) instead of a bare "error response"."""
    request_id: Any = None
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("id"), str | int):
            request_id = parsed["id"]
    except ValueError:
        pass
    data = error.as_dict()
    message = f"{error.message}; {error.hint}" if error.hint else error.message
    return JSONResponse(
        {"jsonrpc": "2.0", "id": request_id, "error": {"code": -32000, "message": message, "data": data}},
        status_code=error.status,
        headers={"Retry-After": str(data["retry_after"])},
    )
