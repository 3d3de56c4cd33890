"""A second person and a second org see nothing of the first, through every REST route and
every MCP tool, and change nothing of theirs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from mcp import Client
from sqlalchemy import text

from core.uow import Database
from servers.app import create_app
from servers.mcp import build_server, toolsets
from tests.conftest import Account, join_org, make_org, running, signup
from tests.support.registry import install
from tests.support.world import Victim, bodies, build_victim, leaked, snapshot, tool_args
from tools.base import ToolRuntime


def _path_variants(path: str, v: Any) -> list[str]:
    variants = [path]
    for name in re.findall(r"{(\w+)}", path):
        assert name in v.refs, f"no victim value for {{{name}}}: add it in tests/support/worlds/<feature>.py"
        variants = [p.replace("{" + name + "}", value) for p in variants for value in v.refs[name]]
    return variants


@pytest.fixture(params=["both walls", "service layer alone"])
async def walls(
    request: pytest.FixtureRequest, db: Database
) -> AsyncIterator[tuple[Any, httpx.AsyncClient, Database]]:
    """The app as deployed, and the app connected as a superuser: row-level security is then
    bypassed, so whatever stays hidden is hidden by the service layer (wall 1) alone."""
    if request.param == "both walls":
        database = db
    else:
        database = Database(db.settings.model_copy(update={"app_database_url": db.settings.database_url}))
        async with database.engine.connect() as conn:
            assert (
                await conn.execute(
                    text("SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user")
                )
            ).scalar_one()
    application = create_app(database.settings, db=database, run_relay=False)
    async with running(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield application, c, database
    if database is not db:
        await database.dispose()


async def attack(client: httpx.AsyncClient) -> tuple[Victim, dict[str, object], Account, str]:
    """The victim's world and a snapshot of it, and Mallory with her own org. Mallory installs
    everything in her own contexts, so every route and tool runs past the registry's gate and
    what is tested is isolation, not installation."""
    v = await build_victim(client)
    before = await snapshot(client, v)
    mallory = await signup(client, "mallory")
    m_org = await make_org(client, mallory, "morg")
    await install(client, mallory)
    await install(client, mallory, org=m_org)
    return v, before, mallory, m_org


async def test_every_rest_route_refuses_or_hides_foreign_data(
    walls: tuple[Any, httpx.AsyncClient, Database],
) -> None:
    app, client, _ = walls
    v, before, mallory, m_org = await attack(client)
    contexts = [mallory.h(), mallory.h(org=m_org), mallory.h(org=v.org)]

    BODIES = bodies()
    paths = {p: ops for p, ops in app.openapi()["paths"].items() if p.startswith("/v1/")}
    assert sum(len(ops) for ops in paths.values()) >= 30
    tried = 0
    for route_path, ops in sorted(paths.items()):
        for method in sorted(m.upper() for m in ops):
            key = (method, route_path)
            body_for = BODIES.get(key, lambda v: None)
            if key in BODIES and BODIES[key] is None:
                continue
            for path in _path_variants(route_path, v):
                for headers in contexts:
                    body = body_for(v) if callable(body_for) else None
                    r = await client.request(method, path, headers=headers, json=body)
                    tried += 1
                    assert r.status_code < 500, (method, path, r.text)
                    assert not leaked(v, r.text), (method, path, r.status_code, leaked(v, r.text))
    assert tried > 100
    assert await snapshot(client, v) == before


async def test_every_mcp_tool_refuses_or_hides_foreign_data(
    walls: tuple[Any, httpx.AsyncClient, Database],
) -> None:
    _, client, db = walls
    v, before, mallory, m_org = await attack(client)
    server = build_server(db, static_token=mallory.token, toolset_names=["all"])

    fillers = tool_args()

    def args_for(schema: dict[str, Any], org: str | None, i: int) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for name in schema.get("properties", {}):
            if name == "org":
                if org is not None:
                    args["org"] = org
            elif name in v.refs:
                values = v.refs[name]
                args[name] = values[i % len(values)]
            elif name in fillers:
                args[name] = fillers[name](v)
        for required in schema.get("required", []):
            if required == "org" and "org" not in args:
                args["org"] = v.org
            assert required in args, f"no value for required argument {required}: add it to a world's ARGS"
        return args

    async with Client(server) as c:
        tools = (await c.list_tools()).tools
        every = {t.name for ts in toolsets(ToolRuntime(db)) if not ts.platform for t in ts.tools}
        assert {t.name for t in tools} == every  # all installed: nothing hidden by the gate
        for tool in tools:
            rounds = max(
                [len(v.refs[n]) for n in tool.input_schema.get("properties", {}) if n in v.refs] or [1]
            )
            for org in (None, m_org, v.org):
                for i in range(rounds):
                    args = args_for(tool.input_schema, org, i)
                    result = await c.call_tool(tool.name, args)
                    text = json.dumps(result.structured_content) + " ".join(
                        getattr(b, "text", "") for b in result.content
                    )
                    assert not leaked(v, text), (tool.name, args, leaked(v, text), text[:1500])
                    if "internal_error" in text:
                        raise AssertionError((tool.name, args, text))
    assert await snapshot(client, v) == before


async def test_org_member_sees_org_but_never_personal_data_of_others(client: httpx.AsyncClient) -> None:
    v = await build_victim(client)
    colleague = await signup(client, "colleague")
    await join_org(client, v.org, v.person, colleague)
    # Other worlds add clients too (e.g. messaging ingest): compare sets, not one known row.
    victim_personal = {
        c["id"] for c in (await client.get("/v1/clients?limit=100", headers=v.person.h())).json()["items"]
    }
    assert v.refs["client_id"][1] in victim_personal
    org_view = {
        c["id"]
        for c in (await client.get("/v1/clients?limit=100", headers=colleague.h(org=v.org))).json()["items"]
    }
    assert v.refs["client_id"][0] in org_view and not org_view & victim_personal
    personal = await client.get(f"/v1/clients/{v.refs['client_id'][1]}", headers=colleague.h(org=v.org))
    assert personal.status_code == 404
    own_personal = (await client.get("/v1/clients", headers=colleague.h())).json()["items"]
    assert own_personal == []
    # And the victim's own org context does not show their personal clients either.
    victim_org = {
        c["id"]
        for c in (await client.get("/v1/clients?limit=100", headers=v.person.h(org=v.org))).json()["items"]
    }
    assert victim_org == org_view and not victim_org & victim_personal
