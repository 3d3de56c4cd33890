"""The REST door's manners: problem bodies, limits, trace ids, health, docs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import signup


async def test_health_reports_name_version_and_database(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    body = r.json()
    assert r.status_code == 200
    assert body["name"] == "atlilith" and body["version"] and body["timestamp"]
    assert body["status"] == "ok" and body["database"] == "ok"


async def test_health_reports_an_unreachable_database() -> None:
    from core.config import Settings
    from servers.app import create_app
    from tests.conftest import running

    settings = Settings(
        database_url="postgresql://nobody@127.0.0.1:1/none",
        jwt_secret="s" * 40,
        relay_enabled=False,
        env="test",
    )
    app = create_app(settings)
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        r = await c.get("/health")
        assert r.status_code == 503 and r.json()["database"] == "unavailable"
        down = await c.post("/v1/auth/login", json={"login": "someone", "password": "whatever-pw"})
        assert down.status_code == 503 and down.json()["code"] == "database_unavailable"
        assert "nobody" not in down.text and "127.0.0.1" not in down.text


async def test_trace_id_echoed_and_taken_from_traceparent(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert len(r.headers["X-Trace-Id"]) == 32
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    r = await client.get("/v1/me", headers={"traceparent": f"00-{tid}-00f067aa0ba902b7-01"})
    assert r.headers["X-Trace-Id"] == tid and r.json()["trace_id"] == tid


async def test_malformed_json_is_400_and_changes_nothing(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/auth/signup",
        content=b'{"email": "x@example.com", ',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    assert r.headers["content-type"] == "application/problem+json"
    # Where it broke, as a place in the body (not a field named "27").
    [issue] = r.json()["errors"]
    assert (
        issue["field"] == "body"
        and issue["message"] == "expecting property name enclosed in double quotes at character 27"
    ), issue


async def test_wrong_types_and_unknown_fields_name_the_field(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.post(
        "/v1/clients", json={"name": ["not", "a", "string"], "colour": "red"}, headers=a.h()
    )
    assert r.status_code == 422
    fields = {e["field"]: e for e in r.json()["errors"]}
    assert set(fields) == {"name", "colour"} and fields["colour"]["message"] == "unknown field"
    q = await client.get("/v1/clients", params={"limit": "many"}, headers=a.h())
    assert (
        q.status_code == 422
        and q.json()["errors"][0]["field"] == "limit"
        and q.json()["errors"][0]["in"] == "query"
    )
    p = await client.get("/v1/clients/not-a-uuid", headers=a.h())
    assert p.status_code == 422 and p.json()["errors"][0]["field"] == "client_id"
    s = await client.get("/v1/orgs/Not_A_Slug", headers=a.h())
    assert s.status_code == 422


async def test_oversized_bodies_get_413_declared_or_streamed(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    big = b'{"name": "' + b"x" * 1_100_000 + b'"}'
    r = await client.post("/v1/clients", content=big, headers={**a.h(), "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit still applies
        for _ in range(20):
            yield b"x" * 100_000

    r = await client.post(
        "/v1/clients", content=chunks(), headers={**a.h(), "content-type": "application/json"}
    )
    assert r.status_code == 413
    assert (await client.get("/v1/clients", headers=a.h())).json()["items"] == []


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found" and "/docs" in r.json()["hint"]
    r = await client.put("/v1/me")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed" and "Allow" in r.json()["hint"]
    assert "GET" in r.headers["allow"]


async def test_internal_errors_never_leak(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import tenancy

    async def boom(*_: object, **__: object) -> None:
        raise RuntimeError("SELECT password_hash FROM platform.person_credentials -- secret")

    monkeypatch.setattr(tenancy, "whoami", boom)
    a = await signup(client)
    # As a real server would: the response is sent, the error stays in the logs.
    quiet = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    )
    async with quiet:
        r = await quiet.get("/v1/me", headers=a.h())
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    assert "SELECT" not in r.text and "secret" not in r.text and "Traceback" not in r.text
    assert r.json()["trace_id"] == r.headers["X-Trace-Id"]


async def test_openapi_and_docs(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/orgs/{slug}/members" in spec["paths"] and "/v1/auth/switch" in spec["paths"]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["type"] == "http"
    assert (await client.get("/docs")).status_code == 200
