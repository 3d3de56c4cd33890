"""Authenticated "who am I": GET /v1/me and MCP `whoami` over HTTP, each against a bare route
doing the same lookup (raw asyncpg, JWT decode), in one run."""

from __future__ import annotations

import json

import httpx

from benchmarks.common import (
    Row,
    Target,
    bench_database,
    mcp_call,
    mcp_headers,
    near_rest,
    server,
    side_by_side,
    table,
)
from benchmarks.people import acting, person
from core.tenancy import create_org
from core.tenancy.schemas import OrgIn
from core.uow import Database


async def run() -> str:
    async with bench_database() as settings:
        db = Database(settings)
        auth = await person(db, "bench-user", "bench@example.com", "Bench")
        async with acting(db, auth.access_token) as (ctx, uow):
            for i in range(3):
                await create_org(ctx, uow, OrgIn(slug=f"bench-org-{i}", name=f"Bench {i}"))
        await db.dispose()
        token = auth.access_token
        headers = {"Authorization": f"Bearer {token}"}
        legacy = mcp_call("whoami", {}, protocol=None)
        legacy_headers = mcp_headers(headers, "whoami", protocol=None)
        whoami = mcp_call("whoami", {})
        whoami_headers = mcp_headers(headers, "whoami")
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            server(settings) as base,
            httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client,
        ):
            for body, sent in ((whoami, whoami_headers), (legacy, legacy_headers)):
                check = await client.post("/mcp", content=body, headers=sent)
                assert check.status_code == 200 and '"isError":false' in check.text, check.text
            bare, rest, mcp, mcp_legacy = await side_by_side(
                client,
                Row("bare route (asyncpg, 1 query)", lambda c: c.get("/bench/bare/me", headers=headers)),
                Row("GET /v1/me", lambda c: c.get("/v1/me", headers=headers), Target(min_ratio=0.7)),
                Row(
                    "MCP whoami over HTTP",
                    lambda c: c.post("/mcp", content=whoami, headers=whoami_headers),
                    near_rest("GET /v1/me"),
                ),
                Row(
                    "MCP whoami, no protocol header",
                    lambda c: c.post("/mcp", content=legacy, headers=legacy_headers),
                ),
            )
            tools = await _tool_list_sizes(client, legacy_headers)
        rows = [bare, rest, mcp, mcp_legacy]
        return table('Authenticated "who am I" (3 memberships)', rows, bare) + "\n" + tools


async def _tool_list_sizes(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})
    listed = (await client.post("/mcp", content=body, headers=headers)).json()["result"]["tools"]
    by_set: dict[str, list[dict[str, object]]] = {}
    from servers.mcp import select_tools, toolsets
    from tools.base import ToolRuntime

    names = {t.name: t.toolset for t in select_tools(toolsets(ToolRuntime(None, "x")), ["all"], False)}  # type: ignore[arg-type]
    for tool in listed:
        by_set.setdefault(names.get(tool["name"], "?"), []).append(tool)
    total = len(json.dumps(listed, separators=(",", ":")))
    lines = [
        "",
        "MCP tools/list (default toolsets), JSON size (tokens ~ bytes/4)",
        f"  {'toolset':12} {'tools':>6} {'bytes':>8} {'~tokens':>8}",
    ]
    for name, items in sorted(by_set.items()):
        size = len(json.dumps(items, separators=(",", ":")))
        lines.append(f"  {name:12} {len(items):6d} {size:8d} {size // 4:8d}")
    lines.append(f"  {'total':12} {len(listed):6d} {total:8d} {total // 4:8d}")
    return "\n".join(lines)
