"""A tool's argument over or under its length bound is refused with the bound said, as REST
says it ("must have at most 200 characters"), never "at most None items" or "must not be
empty" for a slug of two letters."""

from __future__ import annotations

import httpx
from mcp import Client

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import signup
from tests.support.mcp import tool_error


async def test_length_bounds_are_said_with_their_figure(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token, toolset_names=["tenancy"])) as mcp:
        short = tool_error(await mcp.call_tool("orgs_create", {"slug": "ab", "name": "Two letters"}))
        long = tool_error(await mcp.call_tool("clients_create", {"name": "x" * 100_000}))
    assert [(f["path"], f["problem"]) for f in short["fields"]] == [
        ("slug", "must have at least 3 characters")
    ]
    [name] = long["fields"]
    assert name["path"] == "name" and name["problem"].startswith("must have at most ")
    assert name["problem"].endswith(" characters") and "None" not in name["problem"]
