"""MCP over HTTP authenticates a credential once per request: the token verifier's result opens
the tool's context and answers the tool filter (`core.opener`). Revocation still bites on the
very next request."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from mcp import Client
from sqlalchemy import event

from core.uow import Database
from tests.conftest import Account, make_org, signup
from tests.support.mcp import mcp_client
from tests.support.registry import install

MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


@contextmanager
def authentications(db: Database) -> Iterator[list[str]]:
    """Every statement that reads a credential (`platform.resolve_context`, alone or behind an
    OAuth token's owner) on the app's pool while the block runs."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "platform.resolve_context(" in statement or "platform.oauth_token_owner(" in statement:
            seen.append(statement)

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def call(c: Client, name: str, arguments: dict[str, Any], db: Database) -> tuple[Any, int]:
    with authentications(db) as seen:
        result = await c.call_tool(name, arguments)
    return result, len(seen)


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> tuple[Account, str]:
    """A person and an org of theirs where bookings is installed."""
    a = await signup(client)
    org = await make_org(client, a)
    await install(client, a, "bookings", org=org)
    return a, org


async def test_one_tool_call_over_http_authenticates_once(
    app: Any, client: httpx.AsyncClient, db: Database, owner: tuple[Account, str]
) -> None:
    a, org = owner
    async with mcp_client(app, a.token) as c:
        await c.list_tools()  # the client's schema cache: later calls send tools/call alone
        me, count = await call(c, "whoami", {}, db)
        assert not me.is_error
        assert count == 1
        # An org other than the token's default, named by the call: the verifier binds it.
        services, count = await call(c, "bookings_services_list", {"org": org}, db)
        assert not services.is_error, services.content
        assert count == 1
        with authentications(db) as seen:
            await c.list_tools()
        assert len(seen) == 1


async def test_a_key_bound_to_an_org_acts_there_with_one_authentication(
    app: Any, client: httpx.AsyncClient, db: Database, owner: tuple[Account, str]
) -> None:
    a, org = owner
    key = (
        await client.post("/v1/api-keys", json={"name": "agent", "scopes": ["*"], "org": org}, headers=a.h())
    ).json()
    async with mcp_client(app, key["token"]) as c:
        await c.list_tools()
        for arguments in ({}, {"org": org}):
            me, count = await call(c, "whoami", arguments, db)
            assert me.structured_content["context"]["org"]["slug"] == org
            assert count == 1
            gated, count = await call(c, "bookings_services_list", arguments, db)
            assert not gated.is_error, gated.content
            assert count == 1
        elsewhere, _ = await call(c, "whoami", {"org": "personal"}, db)
        assert elsewhere.is_error and "api_key_org_mismatch" in str(elsewhere.content)

    # Revoked between two requests: the next one is refused at the door.
    revoked = await client.delete(f"/v1/api-keys/{key['id']}", headers=a.h())
    assert revoked.status_code == 200, revoked.text
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    refused = await client.post(
        "/mcp", json=init, headers={**MCP_HEADERS, "Authorization": f"Bearer {key['token']}"}
    )
    assert refused.status_code == 401


async def test_the_gate_still_applies_to_a_reused_authentication(
    app: Any, client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    key = (await client.post("/v1/api-keys", json={"name": "agent", "scopes": ["*"]}, headers=a.h())).json()
    async with mcp_client(app, key["token"]) as c:
        refused, count = await call(c, "bookings_services_list", {}, db)
        assert refused.is_error and "component_not_installed" in str(refused.content)
        assert count == 1


async def test_a_token_whose_org_is_gone_still_connects_and_acts_personally(
    app: Any, client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    switched = await client.post("/v1/auth/switch", json={"org": org}, headers=a.h())
    assert switched.status_code == 200, switched.text
    org_token = switched.json()["access_token"]
    assert (await client.delete(f"/v1/orgs/{org}", headers=a.h())).status_code == 204
    async with mcp_client(app, org_token) as c:
        await c.list_tools()
        gone, _ = await call(c, "whoami", {}, db)
        assert gone.is_error and "not_a_member" in str(gone.content)
        personal, _ = await call(c, "whoami", {"org": "personal"}, db)
        assert not personal.is_error, personal.content
        assert personal.structured_content["context"]["org"] is None
