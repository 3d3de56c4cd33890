"""MCP from a test: a client of the app's MCP door in process, and reading tool results the
way a validating client (the TypeScript SDK) does."""

from __future__ import annotations

import json
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Tool, ToolAnnotations


def mcp_http(app: Any, token: str | None, host: str = "testserver") -> httpx2.AsyncClient:
    """An HTTP client of `app` in process, carrying `token` as its bearer (none: anonymous)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url=f"http://{host}", headers=headers
    )


def mcp_client(app: Any, token: str) -> Client:
    """The official MCP client on the app's /mcp, in process."""
    return Client(streamable_http_client("http://testserver/mcp", http_client=mcp_http(app, token)))


def tool_annotations(tool: Tool) -> ToolAnnotations:
    """The annotations of a listed tool: every tool of the app states them."""
    assert tool.annotations is not None, tool.name
    return tool.annotations


def tool_description(tool: Tool) -> str:
    """The description of a listed tool: every tool of the app has one."""
    assert tool.description is not None, tool.name
    return tool.description


def tool_error(result: Any) -> dict[str, Any]:
    """The error object of an `isError` result: no structured content (a validating client
    would check it against the success schema), one text block holding one JSON object."""
    assert result.is_error, result
    assert result.structured_content is None, result.structured_content
    assert len(result.content) == 1, result.content
    body = json.loads(result.content[0].text)
    assert isinstance(body, dict) and isinstance(body["code"], str) and isinstance(body["message"], str)
    assert isinstance(body.get("hint", ""), str)
    for issue in body.get("fields", []):
        assert set(issue) == {"path", "problem"}, issue
    return body
