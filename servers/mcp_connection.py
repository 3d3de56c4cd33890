"""Per-connection tool selection over HTTP, as GitHub's remote MCP server does it: headers
`X-MCP-Toolsets: a,b` and `X-MCP-Readonly: true` (or the query `?toolsets=a,b&read_only=true`)
narrow what one connection lists and may call, within what the server serves. stdio has
`--toolsets` / `--read-only` instead. `X-Atlilith-Org` picks the context of calls naming none."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from core.validation import SLUG_RE
from servers.problems import problem_response

__all__ = ["Selection", "SelectionMiddleware", "current_org_header", "current_selection", "parse_selection"]

TRUE = {"1", "true", "yes", "on"}
FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class Selection:
    toolsets: frozenset[str] | None = None  # None: every toolset the server serves
    read_only: bool = False

    def allows(self, toolset: str, read_only_tool: bool, *, always: bool = False) -> bool:
        if self.read_only and not read_only_tool:
            return False
        return always or self.toolsets is None or toolset in self.toolsets


_EVERYTHING = Selection()
_SELECTION_HEADERS = frozenset({b"x-mcp-toolsets", b"x-mcp-readonly"})
_ORG_HEADER = b"x-atlilith-org"
_selection: ContextVar[Selection | None] = ContextVar("atlilith_mcp_selection", default=None)
_org: ContextVar[str | None] = ContextVar("atlilith_mcp_org_header", default=None)


def current_selection() -> Selection:
    return _selection.get() or _EVERYTHING


def current_org_header() -> str | None:
    """The request's `X-Atlilith-Org` (a slug or `personal`), checked: the context of its tool
    calls that name no `org`, as on the REST door."""
    return _org.get()


def _org_header(value: str) -> str:
    org = value.strip().lower()
    if not SLUG_RE.fullmatch(org):
        # Refused by name, never ignored: a host set up with it would act elsewhere.
        raise SelectionError(
            "invalid_org_header",
            f"X-Atlilith-Org is no org slug: {value[:40]!r}",
            "send an org's slug (3-40 lowercase letters, digits, hyphens) or `personal`",
        )
    return org


class SelectionError(ValueError):
    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.hint = code, hint


def parse_selection(headers: dict[str, str], query: str, known: set[str]) -> Selection:
    params = parse_qs(query)
    raw_sets = headers.get("x-mcp-toolsets") or ",".join(params.get("toolsets", []))
    raw_ro = (headers.get("x-mcp-readonly") or (params.get("read_only") or [""])[0]).strip().lower()
    toolsets: frozenset[str] | None = None
    names = {t.strip().lower() for t in raw_sets.split(",") if t.strip()}
    if names and "all" not in names:
        unknown = sorted(names - known)
        if unknown:
            raise SelectionError(
                "unknown_toolsets",
                f"unknown toolsets {unknown}",
                f"pick from {sorted(known)} (comma-separated), or `all`",
            )
        toolsets = frozenset(names)
    if raw_ro not in TRUE | FALSE:
        raise SelectionError(
            "invalid_read_only", f"read-only must be true or false, not {raw_ro!r}", "send `true` or `false`"
        )
    return Selection(toolsets=toolsets, read_only=raw_ro in TRUE)


class SelectionMiddleware:
    """Reads the connection's selection before the MCP transport runs; the server's tools/list
    and tools/call read it back (`current_selection`) in the same request."""

    def __init__(self, app: ASGIApp, known: set[str]) -> None:
        self.app = app
        self.known = known

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Only the selection's two headers are decoded: a call carries a dozen others (a bearer
        # token among them) that nothing here reads.
        headers: dict[str, str] = {}
        org: str | None = None
        for key, value in scope["headers"]:
            name = key.lower()
            if name in _SELECTION_HEADERS:
                headers[name.decode("latin-1")] = value.decode("latin-1")
            elif name == _ORG_HEADER:
                org = value.decode("latin-1")
        query = scope.get("query_string", b"")
        try:
            selection = (
                parse_selection(headers, query.decode("latin-1"), self.known)
                if headers or query
                else _EVERYTHING
            )
            org = _org_header(org) if org else None
        except SelectionError as err:
            await problem_response(400, err.code, "Bad request", str(err), hint=err.hint)(
                scope, receive, send
            )
            return
        token, org_token = _selection.set(selection), _org.set(org)
        try:
            await self.app(scope, receive, send)
        finally:
            _org.reset(org_token)
            _selection.reset(token)
