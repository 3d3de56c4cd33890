"""Each tool says which scopes its calls need, and tools/list shows a credential only the tools
it may call: a read-only key or OAuth app is not offered writes it would be refused. The
declarations are held to what core asks for: every tool's success call is made with a key
holding only its declared scopes (it must not be refused for a scope), and with a key holding
every scope but one of them (it must be refused for that one)."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import httpx
from mcp import Client

from core.context import known_scopes, scope_grants
from core.uow import Database
from servers.mcp import build_server
from tests.conftest import signup
from tests.support.every_tool import World, plan_ok
from tests.support.mcp import mcp_client
from tests.support.registry import install
from tests.tools.test_validating_client import every_tool_world
from tools.bookings import bookings

# The action a job runs brings its own scope, known from the arguments only (`core.billing.catalogue`):
# the world's cases run identity's resolvers.
ACTION_SCOPES = {"jobs_quote": "identity:read", "jobs_run": "identity:read"}
# A scope that lets a key call nothing but inbound messaging: what a tool needing no scope is
# called with.
BAREST = "messaging:ingest"


def _refusal(result: Any) -> dict[str, Any] | None:
    if not result.is_error:
        return None
    body = json.loads(result.content[0].text)
    return body if isinstance(body, dict) else None


class Keys:
    """In-process MCP clients of the world's owner, one per set of scopes its key holds."""

    def __init__(self, w: World, stack: AsyncExitStack) -> None:
        self.w, self.stack = w, stack
        self.clients: dict[frozenset[str], Client] = {}

    async def client(self, scopes: frozenset[str]) -> Client:
        if scopes not in self.clients:
            made = await self.w.rest.post(
                "/v1/api-keys", json={"name": "scoped", "scopes": sorted(scopes)}, headers=self.w.owner.h()
            )
            assert made.status_code == 201, made.text
            server = build_server(self.w.db, static_token=made.json()["token"], toolset_names=["all"])
            self.clients[scopes] = await self.stack.enter_async_context(Client(server))
        return self.clients[scopes]


def without(scope: str) -> frozenset[str]:
    """Every known scope that does not grant `scope`."""
    return frozenset(s for s in known_scopes() if not scope_grants(frozenset({s}), scope))


async def test_each_tool_declares_the_scopes_core_asks_for(db: Database) -> None:
    async with every_tool_world(db) as w, AsyncExitStack() as stack:
        specs = {
            t.name: t
            for t in build_server(w.db, static_token=w.owner.token, toolset_names=["all"]).every_tool()
        }
        keys = Keys(w, stack)
        problems: list[str] = []
        for name, args in await plan_ok(w):
            needed = specs[name].scopes
            for scope in sorted(needed):
                refused = _refusal(await (await keys.client(without(scope))).call_tool(name, args))
                if not refused or refused["code"] != "missing_scope" or refused.get("scope") != scope:
                    problems.append(f"{name}: declares {scope!r}, but a key without it got {refused}")
            held = (needed | {ACTION_SCOPES[name]} if name in ACTION_SCOPES else needed) or frozenset(
                {BAREST}
            )
            answer = _refusal(await (await keys.client(held)).call_tool(name, args))
            if answer is not None and answer["code"] == "missing_scope":
                problems.append(f"{name}: declares {sorted(needed)}, core asks for {answer.get('scope')!r}")
    assert not problems, "\n".join(problems)


async def test_the_list_shows_a_credential_only_what_its_scopes_allow(
    app: Any, client: httpx.AsyncClient
) -> None:
    """One server, three keys of one person: each is listed what its scopes allow (the server
    keeps one list per scopes, never one caller's for another)."""
    a = await signup(client)
    await install(client, a, "bookings", "messaging")
    listed: dict[str, set[str]] = {}
    for scopes in (["*"], ["bookings:read"], ["bookings:write", "tenancy:read"], ["*"]):
        key = await client.post("/v1/api-keys", json={"name": "k", "scopes": scopes}, headers=a.h())
        async with mcp_client(app, key.json()["token"]) as c:
            listed[",".join(scopes)] = {t.name for t in (await c.list_tools()).tools}
    every, reads, writes = listed["*"], listed["bookings:read"], listed["bookings:write,tenancy:read"]
    assert {"bookings_hold", "messaging_send", "clients_create", "whoami"} <= every
    assert reads == {"whoami"} | {t.name for t in bookings.tools if t.read_only and t.name in every}
    assert "bookings_list" in reads and "bookings_hold" not in reads and "orgs_list" not in reads
    assert {"bookings_hold", "bookings_list", "orgs_list", "clients_list"} <= writes
    assert not writes & {"clients_create", "messaging_send", "messaging_threads_list", "registry_search"}
    # A call outside the list is still answered, with the scope to ask for.
    key = await client.post("/v1/api-keys", json={"name": "r", "scopes": ["bookings:read"]}, headers=a.h())
    async with mcp_client(app, key.json()["token"]) as c:
        refused = _refusal(await c.call_tool("bookings_availability_set", {"time_zone": "UTC", "weekly": []}))
    assert refused is not None and refused["code"] == "missing_scope" and refused["scope"] == "bookings:write"
