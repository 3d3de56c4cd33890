"""The shared request path stays lean (issue 19): GET /v1/me and MCP `whoami` in the same two
statements, the MCP call continuing in the transaction its token verifier opened, a request
that takes no unit of work handing its connection back, tool lists built once per visible set
and still changing at once on an install, and pooled connections the server closed replaced
without a pre-ping round trip."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from core.db import asyncpg_dsn
from core.uow import Database
from tests.conftest import make_org, signup
from tests.support.billing import grant, make_admin
from tests.support.mcp import mcp_client
from tests.support.registry import install, uninstall
from tests.support.request_path import MCP_POST_HEADERS as MCP_HEADERS
from tests.support.request_path import own_database
from tests.support.serving import app_client

WHOAMI = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}


@pytest.fixture
async def counted_db(db: Database) -> AsyncIterator[Database]:
    """The test database, with stateless MCP (one POST per call) and each request's statements
    reported (`X-DB-Statements`), as the bench server runs."""
    async with own_database(db, expose_db_stats=True) as database:
        yield database


@pytest.fixture
async def counted(counted_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(counted_db, base_url="http://localhost:8000") as c:
        yield c


async def test_me_and_mcp_whoami_cost_the_same_two_statements(counted: httpx.AsyncClient) -> None:
    a = await signup(counted)
    await make_org(counted, a)
    me = await counted.get("/v1/me", headers=a.h())
    assert me.status_code == 200, me.text
    assert me.headers["x-db-statements"] == "2"  # the caller's context, then the person and orgs
    mcp = await counted.post("/mcp", json=WHOAMI, headers={**MCP_HEADERS, **a.h()})
    assert mcp.status_code == 200, mcp.text
    result = mcp.json()["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["person"]["id"] == me.json()["person"]["id"]
    # The verifier's authentication is the call's context: no second binding statement.
    assert mcp.headers["x-db-statements"] == "2"


def _call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def test_a_gated_tool_costs_what_its_rest_twin_costs_and_is_refused_where_not_installed(
    counted: httpx.AsyncClient,
) -> None:
    a = await signup(counted)
    org = await make_org(counted, a)
    headers = {**MCP_HEADERS, **a.h()}
    # Not installed: the tool is refused as before; REST, the owner's door, is not gated.
    refused = await counted.post("/mcp", json=_call("bookings_services_list", {}), headers=headers)
    assert refused.status_code == 200, refused.text
    assert refused.json()["result"]["isError"] is True
    error = json.loads(refused.json()["result"]["content"][0]["text"])
    assert error["code"] == "component_not_installed" and error["component"] == "bookings"
    rest = await counted.get("/v1/bookings/services", headers=a.h())
    assert rest.status_code == 200, rest.text
    await install(counted, a, "bookings")
    await install(counted, a, "bookings", org=org)
    for arguments, asked in (({}, {}), ({"org": org}, {"org": org})):
        rest = await counted.get("/v1/bookings/services", headers=a.h(**asked))
        assert rest.status_code == 200, rest.text
        mcp = await counted.post("/mcp", json=_call("bookings_services_list", arguments), headers=headers)
        assert mcp.json()["result"]["isError"] is False, mcp.text
        # The gate is read in the statement that binds the context, and the verifier binds the
        # org the call names: no statement of their own.
        assert mcp.headers["x-db-statements"] == rest.headers["x-db-statements"]
    # An org the person does not belong to: still authenticated, the call refused in its words.
    other = await signup(counted)
    elsewhere = await counted.post(
        "/mcp", json=_call("bookings_services_list", {"org": org}), headers={**MCP_HEADERS, **other.h()}
    )
    assert elsewhere.status_code == 200, elsewhere.text
    assert json.loads(elsewhere.json()["result"]["content"][0]["text"])["code"] == "not_a_member"
    # Another tenant's installations never open the gate: the stranger's own context has none,
    # and an install in their org does not count in their personal context.
    theirs = await make_org(counted, other)
    await install(counted, other, "bookings", org=theirs)
    for arguments, code in (({}, "component_not_installed"), ({"org": theirs}, None)):
        r = await counted.post(
            "/mcp", json=_call("bookings_services_list", arguments), headers={**MCP_HEADERS, **other.h()}
        )
        result = r.json()["result"]
        assert result["isError"] is (code is not None), r.text
        if code:
            assert json.loads(result["content"][0]["text"])["code"] == code


async def test_a_run_reads_its_gate_with_the_binding_on_both_doors_and_an_uninstall_counts_at_once(
    counted: httpx.AsyncClient,
) -> None:
    """A run and a quote: the context's binding reads what it may use, so the action's gate
    costs no statement of its own over REST or MCP; installed in the org only, the personal
    context is refused; an uninstall refuses the very next run."""
    a = await signup(counted)
    org = await make_org(counted, a)
    admin = await make_admin(counted)
    for where in ({"person": a.slug}, {"org": org}):
        await grant(counted, admin, 100, **where)
    # The agent's door to jobs (its toolset) everywhere; the action's component in the org only.
    await install(counted, a, "jobs")
    await install(counted, a, "jobs", "identity", org=org)
    body = {"input": {"email": "gate@example.com"}}
    arguments = {"component": "identity", "action": "resolve-person", "input_json": json.dumps(body["input"])}
    headers = {**MCP_HEADERS, **a.h()}
    # The binding (with what the context may use), then the quote's account read, or the run's
    # job-and-event statement and its hold sent with the COMMIT: nothing for the gate.
    for path, tool, statements in (
        ("/v1/quote/identity/resolve-person", "jobs_quote", "2"),
        ("/v1/run/identity/resolve-person", "jobs_run", "3"),
    ):
        rest = await counted.post(path, json=body, headers=a.h(org=org))
        assert rest.status_code in (200, 202), rest.text
        assert rest.headers["x-db-statements"] == statements, path
        mcp = await counted.post("/mcp", json=_call(tool, {**arguments, "org": org}), headers=headers)
        assert mcp.json()["result"]["isError"] is False, mcp.text
        assert mcp.headers["x-db-statements"] == rest.headers["x-db-statements"], tool
        # Installed in the org, not in the personal context: refused there, on both doors.
        refused = await counted.post(path, json=body, headers=a.h())
        assert refused.status_code == 403 and refused.json()["code"] == "component_not_installed"
        mcp = await counted.post("/mcp", json=_call(tool, arguments), headers=headers)
        assert json.loads(mcp.json()["result"]["content"][0]["text"])["code"] == "component_not_installed"
    await uninstall(counted, a, "identity", org=org)
    after = await counted.post("/v1/run/identity/resolve-person", json=body, headers=a.h(org=org))
    assert after.status_code == 403 and after.json()["code"] == "component_not_installed", after.text


async def test_an_mcp_request_that_takes_no_unit_of_work_hands_its_connection_back(
    counted: httpx.AsyncClient, counted_db: Database
) -> None:
    db = counted_db
    a = await signup(counted)
    await counted.get("/v1/me", headers=a.h())  # the pool holds a connection from here on
    before = db.engine.pool.checkedout()  # type: ignore[attr-defined]
    ping = {"jsonrpc": "2.0", "id": 7, "method": "ping", "params": {}}
    notice = {"jsonrpc": "2.0", "method": "notifications/initialized", "params": {}}
    refused = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "nope", "arguments": {}}}
    for body in (ping, notice, refused, WHOAMI):
        r = await counted.post("/mcp", json=body, headers={**MCP_HEADERS, **a.h()})
        assert r.status_code in (200, 202), r.text
        assert db.engine.pool.checkedout() == before  # type: ignore[attr-defined]


async def test_a_revoked_key_is_refused_on_the_next_mcp_request(counted: httpx.AsyncClient) -> None:
    a = await signup(counted)
    key = (await counted.post("/v1/api-keys", json={"name": "agent", "scopes": ["*"]}, headers=a.h())).json()
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {key['token']}"}
    ok = await counted.post("/mcp", json=WHOAMI, headers=headers)
    assert ok.status_code == 200 and ok.json()["result"]["isError"] is False, ok.text
    assert (await counted.delete(f"/v1/api-keys/{key['id']}", headers=a.h())).status_code == 200
    refused = await counted.post("/mcp", json=WHOAMI, headers=headers)
    assert refused.status_code == 401


async def _names(c: Client) -> set[str]:
    return {t.name for t in (await c.list_tools()).tools}


async def test_an_install_changes_the_next_tool_list_of_that_caller_only(
    app: Any, client: httpx.AsyncClient
) -> None:
    a, b = await signup(client), await signup(client)
    async with mcp_client(app, a.token) as ca, mcp_client(app, b.token) as cb:
        a_before, b_before = await _names(ca), await _names(cb)
        assert a_before == b_before  # the same visible toolsets: the same (reused) list
        assert not any(n.startswith("bookings_") for n in a_before)
        await install(client, a, "bookings")
        a_after, b_after = await _names(ca), await _names(cb)
        assert {n for n in a_after - a_before if n.startswith("bookings_")}
        assert a_before <= a_after
        assert b_after == b_before
        # Asked again, the same answer (now from the reused list).
        assert await _names(ca) == a_after


async def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    counted: httpx.AsyncClient, counted_db: Database
) -> None:
    db = counted_db
    a = await signup(counted)
    # Hold three of the app pool's connections at once, so the pool keeps them all.
    held = [await db.engine.connect() for _ in range(3)]
    gone: list[asyncio.Event] = []
    pids: list[int] = []
    for conn in held:
        raw = (await conn.get_raw_connection()).driver_connection
        assert isinstance(raw, asyncpg.Connection)
        event = asyncio.Event()
        raw.add_termination_listener(lambda _c, event=event: event.set())
        gone.append(event)
        pids.append(raw.get_server_pid())
    for conn in held:
        await conn.close()  # back into the pool, alive
    admin = await asyncpg.connect(asyncpg_dsn(db.settings.database_url or ""))
    try:
        # What a restart or an operator's kill does to idle pooled connections.
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
    finally:
        await admin.close()
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in gone)), timeout=10)
    for _ in range(6):
        r = await counted.get("/v1/me", headers=a.h())
        assert r.status_code == 200, r.text
        assert uuid.UUID(json.loads(r.text)["person"]["id"]) == uuid.UUID(a.id)


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_an_open_stream_holds_no_connection(db: Database, client: httpx.AsyncClient, mode: str) -> None:
    """A listen stream (2026-07-28) or a session's GET stream (handshake era) lasts as long as
    the client wants: the verifier's unit of work goes back before it starts."""

    from servers.app import create_app
    from tests.support.serving import free_port, serving

    a = await signup(client)
    port = free_port()
    settings = db.settings.model_copy(update={"port": port, "mcp_http_sessions": "stateful"})
    own_db = Database(settings)
    app = create_app(settings, db=own_db, run_relay=False)
    try:
        async with serving(app, port, lifespan="on"):
            http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {a.token}"})
            url = f"http://127.0.0.1:{port}/mcp"
            async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
                assert not (await c.call_tool("whoami", {})).is_error
                if mode != "legacy":
                    async with c.listen(tools_list_changed=True):
                        assert not (await c.call_tool("whoami", {})).is_error
                        assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
                else:
                    # The session's standing GET stream is open alongside the call.
                    assert not (await c.call_tool("whoami", {})).is_error
                    assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await own_db.dispose()


def test_no_route_or_dependency_runs_in_the_thread_pool(db: Database) -> None:
    """FastAPI runs a plain `def` endpoint or dependency in its thread pool: a thread hop on
    every request. Every route of the app, and every dependency it solves, is `async def`."""
    import inspect

    from fastapi.dependencies.models import Dependant
    from fastapi.routing import APIRoute

    from servers.app import create_app

    app = create_app(db.settings, db=db, run_relay=False)

    def routes(entries: list[Any]) -> list[APIRoute]:
        found: list[APIRoute] = []
        for entry in entries:
            if isinstance(entry, APIRoute):
                found.append(entry)
            inner = getattr(getattr(entry, "original_router", None), "routes", None)
            if isinstance(inner, list):
                found.extend(routes(inner))
        return found

    def blocking(dependant: Dependant, where: str) -> list[str]:
        call = dependant.call
        coroutine = inspect.iscoroutinefunction(call) or inspect.iscoroutinefunction(
            getattr(call, "__call__", None)  # noqa: B004  (a callable instance: HTTPBearer, ours)
        )
        found = [] if call is None or coroutine else [f"{where}: {getattr(call, '__name__', call)!r}"]
        for sub in dependant.dependencies:
            found += blocking(sub, where)
        return found

    every = routes(app.router.routes)
    assert len(every) > 100  # the REST routes, found inside their routers
    offenders = [o for route in every for o in blocking(route.dependant, f"{route.methods} {route.path}")]
    assert offenders == []
