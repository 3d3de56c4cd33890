"""The OpenAPI document tells the truth a client generator relies on: one clean id per
operation (the MCP tool's name where a tool does the same work), problem+json for every error,
the headers that matter, and described tags."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi.routing import APIRoute

from core.doors import operations_called
from servers.api import api_routers


async def _spec(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


def _api_routes() -> list[APIRoute]:
    """The routes of every API router; each is an `APIRoute` (the app's `CheckedRoute`)."""
    routes = [r for router in api_routers() for r in router.routes]
    assert all(isinstance(r, APIRoute) for r in routes)
    return [r for r in routes if isinstance(r, APIRoute)]


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in spec["paths"].items() for m, op in item.items()]


async def test_operation_ids_are_clean_unique_and_named_after_tools(
    client: httpx.AsyncClient, app: Any
) -> None:
    ops = _operations(await _spec(client))
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids)), "duplicate operationIds"
    generated = [i for i in ids if "_v1_" in i or "__" in i]
    assert generated == []
    tools = {spec.name for spec in app.state.mcp.every_tool()}
    by_id = {op["operationId"]: (method, path) for method, path, op in ops}
    # Where one tool does exactly what a route does, the route carries its name.
    assert by_id["bookings_hold"] == ("POST", "/v1/bookings/holds")
    assert by_id["whoami"] == ("GET", "/v1/me")
    assert by_id["messaging_send"] == ("POST", "/v1/messaging/threads/{thread_id}/messages")
    named_after_tools = [i for i in ids if i in tools]
    assert len(named_after_tools) >= 40
    # ...and never borrows the name of a tool doing different work.
    tool_ops = {spec.name: operations_called(spec.fn) for spec in app.state.mcp.every_tool()}
    routes = {
        (method, r.path): operations_called(r.endpoint)
        for r in _api_routes()
        for method in getattr(r, "methods", ()) or ()
    }
    for method, path, op in ops:
        if op["operationId"] in tools:
            assert routes[(method, path)] == tool_ops[op["operationId"]], (method, path)


async def test_every_error_is_documented_as_problem_json_with_trace_header(
    client: httpx.AsyncClient,
) -> None:
    spec = await _spec(client)
    assert "Problem" in spec["components"]["schemas"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for method, path, op in _operations(spec):
        if not path.startswith("/v1/"):
            continue
        responses = op["responses"]
        assert {"401", "422", "429", "4XX"} <= set(responses), (method, path)
        for status, response in responses.items():
            assert {"X-Trace-Id", "RateLimit", "RateLimit-Policy"} <= set(response.get("headers", {})), (
                method,
                path,
                status,
            )
            if status.startswith("4"):
                assert list(response["content"]) == ["application/problem+json"], (method, path, status)
        if "security" in op:
            assert {"403", "404"} <= set(responses), (method, path)
        assert "Retry-After" in responses["429"]["headers"]


async def test_tags_are_described_and_headers_documented(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    described = {t["name"] for t in spec.get("tags", []) if t.get("description")}
    used = {tag for _, _, op in _operations(spec) for tag in op.get("tags", [])}
    assert used <= described, sorted(used - described)
    params = {
        p["name"]
        for _, _, op in _operations(spec)
        for p in op.get("parameters", [])
        if p.get("in") == "header"
    }
    assert {"Idempotency-Key", "x-atlilith-org"} <= {*params, *(p.lower() for p in params)}


async def test_conditional_writes_document_etag_and_412(client: httpx.AsyncClient) -> None:
    spec = await _spec(client)
    item = spec["paths"]["/v1/bookings/services/{service_id}"]
    assert "ETag" in item["get"]["responses"]["200"]["headers"]
    assert "ETag" in item["patch"]["responses"]["200"]["headers"]
    assert "412" in item["patch"]["responses"]
    assert "If-Match" in {p["name"] for p in item["patch"]["parameters"]}


async def test_a_real_error_matches_what_the_document_promises(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/me")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert {"type", "title", "status", "detail", "code", "trace_id"} <= set(body)
    assert r.headers["x-trace-id"] == body["trace_id"]
