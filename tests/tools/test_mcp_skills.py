"""Skills over MCP per the Skills extension (SEP-2640, `io.modelcontextprotocol/skills`): the
extension is declared, each skill is `skill://<name>/SKILL.md` described by its own frontmatter,
and a caller lists and reads only the skills of the components it may use."""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import httpx
import pytest
import yaml
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, PaginatedRequest, PaginatedRequestParams, Request, TextResourceContents

from core.uow import Database
from servers.mcp import build_server
from servers.mcp_skills import EXTENSION, GetSkillRequestParams, GetSkillResult, ListSkillsResult
from tests.conftest import ROOT, join_org, make_org, signup
from tests.support.billing import make_admin
from tests.support.mcp import mcp_client
from tests.support.registry import install, uninstall


class ListSkills(PaginatedRequest[Literal["skills/list"]]):
    method: Literal["skills/list"] = "skills/list"


class GetSkill(Request[GetSkillRequestParams, Literal["skills/get"]]):
    method: Literal["skills/get"] = "skills/get"


def uri(name: str) -> str:
    return f"skill://{name}/SKILL.md"


def frontmatter(name: str) -> dict[str, Any]:
    text = (ROOT / "skills" / name / "SKILL.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(text.split("\n---", 1)[0].removeprefix("---\n"))
    assert isinstance(meta, dict)
    return meta


async def skills_list(c: Client) -> dict[str, Any]:
    result = await c.session.send_request(ListSkills(params=PaginatedRequestParams()), ListSkillsResult)
    return {s.uri: s for s in result.skills}


async def skills_get(c: Client, name: str) -> GetSkillResult:
    return await c.session.send_request(GetSkill(params=GetSkillRequestParams(uri=uri(name))), GetSkillResult)


async def read_text(c: Client, resource: str) -> TextResourceContents:
    """The first block of a resource read, a text one (a skill is markdown)."""
    body = (await c.read_resource(resource)).contents[0]
    assert isinstance(body, TextResourceContents), body
    return body


async def listed(c: Client) -> set[str]:
    """Skill URIs in both listings, which must agree."""
    resources = {
        str(r.uri) for r in (await c.list_resources()).resources if str(r.uri).startswith("skill://")
    }
    assert resources == set(await skills_list(c))
    return resources


async def refused(c: Client, name: str) -> str:
    """A read and a get of a skill the caller may not see: -32602, worded like a URI nothing is
    served at."""
    with pytest.raises(MCPError) as read:
        await c.read_resource(uri(name))
    assert read.value.error.code == INVALID_PARAMS
    with pytest.raises(MCPError) as get:
        await skills_get(c, name)
    assert (
        get.value.error.code == INVALID_PARAMS
        and get.value.error.message == f"No skill is served at {uri(name)}"
    )
    return read.value.error.message.replace(uri(name), "<uri>")


async def test_the_extension_is_declared(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    # 2026-07-28 (server/discover): declared, next to the resources capability it requires.
    async with Client(build_server(db, static_token=a.token)) as c:
        caps = c.server_capabilities
        assert caps.extensions is not None and caps.extensions[EXTENSION] == {}
        assert caps.resources is not None
        assert "skill://tenancy/SKILL.md" in (c.instructions or "")
        assert set(await skills_list(c)) == {uri("tenancy"), uri("registry")}
    # A 2025-11-25 initialize cannot carry `extensions` (not in that schema; the SDK drops it),
    # but the skills are still there: as resources, and through skills/list.
    async with Client(build_server(db, static_token=a.token), mode="legacy") as c:
        assert c.protocol_version == "2025-11-25" and c.server_capabilities.resources is not None
        assert await listed(c) == {uri("tenancy"), uri("registry")}


async def test_a_new_person_sees_the_always_available_skills_only(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as c:
        assert await listed(c) == {uri("tenancy"), uri("registry")}
        resources = {str(r.uri): r for r in (await c.list_resources()).resources}
        entries = await skills_list(c)
        for name in ("tenancy", "registry"):
            meta = frontmatter(name)
            r = resources[uri(name)]
            assert (r.name, r.description, r.mime_type) == (name, meta["description"], "text/markdown")
            # The entry carries the frontmatter verbatim and a manifest that matches the bytes read.
            entry = entries[uri(name)]
            assert entry.frontmatter == meta
            raw = (ROOT / "skills" / name / "SKILL.md").read_bytes()
            assert [(f.uri, f.digest, f.size) for f in entry.resources] == [
                (uri(name), f"sha256:{hashlib.sha256(raw).hexdigest()}", len(raw))
            ]
            body = await read_text(c, uri(name))
            assert body.mime_type == "text/markdown" and body.text.encode() == raw
            assert (await skills_get(c, name)).skill == entry
        unknown = await refused(c, "no-such-skill")
        for name in ("bookings", "messaging", "analytics", "admin"):
            assert await refused(c, name) == unknown, name
        # The shell skill belongs to no component: not served over MCP.
        assert await refused(c, "atlilith-cli") == unknown


async def test_skills_follow_installs_per_person_and_org(client: httpx.AsyncClient, db: Database) -> None:
    a, b = await signup(client), await signup(client)
    org = await make_org(client, a)
    async with (
        Client(build_server(db, static_token=a.token)) as ca,
        Client(build_server(db, static_token=b.token)) as cb,
    ):
        await install(client, a, "bookings")
        assert await listed(ca) == {uri("tenancy"), uri("registry"), uri("bookings")}
        assert "Bookings" in (await read_text(ca, uri("bookings"))).text
        assert (await skills_get(ca, "bookings")).skill.frontmatter == frontmatter("bookings")
        # Another person sees nothing of it, and cannot read it.
        assert await listed(cb) == {uri("tenancy"), uri("registry")}
        await refused(cb, "bookings")

        # Installed in an org: its members see the skill, and lose it when they leave.
        await install(client, a, "messaging", org=org)
        assert uri("messaging") in await listed(ca)
        await refused(cb, "messaging")
        await join_org(client, org, a, b)
        assert await listed(cb) == {uri("tenancy"), uri("registry"), uri("messaging")}
        r = await client.delete(f"/v1/orgs/{org}/members/{b.slug}", headers=a.h())
        assert r.status_code == 204, r.text
        await refused(cb, "messaging")

        # Uninstalled: gone from the list and refused at once.
        await uninstall(client, a, "bookings")
        assert uri("bookings") not in await listed(ca)
        await refused(ca, "bookings")


async def test_the_admin_skill_is_for_platform_admins_only(client: httpx.AsyncClient, db: Database) -> None:
    admin, someone = await make_admin(client), await signup(client)
    async with Client(build_server(db, static_token=admin.token, toolset_names=["all"])) as c:
        assert uri("admin") in await listed(c)
        assert (await skills_get(c, "admin")).skill.frontmatter["name"] == "admin"
    async with Client(build_server(db, static_token=someone.token, toolset_names=["all"])) as c:
        assert uri("admin") not in await listed(c)
        await refused(c, "admin")
    # Not served at all when the server does not serve the admin toolset.
    async with Client(build_server(db, static_token=admin.token)) as c:
        assert uri("admin") not in await listed(c)


async def test_skills_over_http_follow_the_bearer(app: Any, client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    await install(client, a, "analytics")
    seen: dict[str, set[str]] = {}
    for who in (a, b):
        async with mcp_client(app, who.token) as c:
            assert EXTENSION in (c.server_capabilities.extensions or {})
            seen[who.slug] = await listed(c)
            if who is b:
                await refused(c, "analytics")
    assert uri("analytics") in seen[a.slug] and uri("analytics") not in seen[b.slug]
