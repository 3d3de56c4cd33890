"""A second person and a second org see nothing of the first, through every REST route and
every MCP tool, and change nothing of theirs."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import httpx
from mcp import Client

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import make_org, signup
from tests.support.world import build_victim, leaked, new_slug, snapshot

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/auth/signup"): None,  # anonymous flows: covered elsewhere
    ("POST", "/v1/auth/login"): None,
    ("POST", "/v1/auth/refresh"): None,
    ("POST", "/v1/auth/logout"): None,  # would end the attacker's own session mid-test
    ("POST", "/v1/auth/switch"): lambda v: {"org": v.org},
    ("PATCH", "/v1/me"): lambda v: {"display_name": "Mallory"},
    ("POST", "/v1/me/password"): lambda v: {
        "current_password": "wrong-one",
        "new_password": "new-password-1",
    },
    ("POST", "/v1/api-keys"): lambda v: {"name": "k", "scopes": ["*"], "org": v.org},
    ("POST", "/v1/orgs"): lambda v: {"slug": new_slug(), "name": "M"},
    ("PATCH", "/v1/orgs/{slug}"): lambda v: {"name": "pwned"},
    ("POST", "/v1/orgs/{slug}/transfer"): lambda v: {"person": v.person.slug},
    ("POST", "/v1/orgs/{slug}/members"): lambda v: {"person": v.person.slug, "role": "admin"},
    ("PATCH", "/v1/orgs/{slug}/members/{person}"): lambda v: {"role": "member"},
    ("POST", "/v1/orgs/{slug}/invitations"): lambda v: {"email": "mallory@example.com", "role": "admin"},
    ("POST", "/v1/brands"): lambda v: {"slug": new_slug(), "name": "M"},
    ("PATCH", "/v1/brands/{brand_id}"): lambda v: {"name": "pwned", "domains": []},
    ("POST", "/v1/clients"): lambda v: {"name": "M"},
    ("PATCH", "/v1/clients/{client_id}"): lambda v: {"name": "pwned", "notes": "pwned"},
}


def _path_variants(path: str, v: Any) -> list[str]:
    values = {
        "slug": [v.org],
        "person": [v.person.slug],
        "client_id": [v.org_client, v.personal_client],
        "brand_id": [v.brand, v.personal_brand],
        "key_id": [v.api_key],
        "invitation_id": [v.invitation],
    }
    variants = [path]
    for name in re.findall(r"{(\w+)}", path):
        variants = [p.replace("{" + name + "}", value) for p in variants for value in values[name]]
    return variants


async def test_every_rest_route_refuses_or_hides_foreign_data(app: Any, client: httpx.AsyncClient) -> None:
    v = await build_victim(client)
    before = await snapshot(client, v)
    mallory = await signup(client, "mallory")
    m_org = await make_org(client, mallory, "morg")
    contexts = [mallory.h(), mallory.h(org=m_org), mallory.h(org=v.org)]

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


async def test_every_mcp_tool_refuses_or_hides_foreign_data(client: httpx.AsyncClient, db: Database) -> None:
    v = await build_victim(client)
    before = await snapshot(client, v)
    mallory = await signup(client, "mallory")
    m_org = await make_org(client, mallory, "morg")
    server = build_server(db, static_token=mallory.token, toolset_names=["all"])

    def args_for(schema: dict[str, Any], org: str | None) -> dict[str, Any]:
        props = schema.get("properties", {})
        fill = {
            "org": org,
            "client_id": v.org_client,
            "person": v.person.slug,
            "slug": new_slug(),
            "name": "pwned",
            "role": "admin",
            "q": "Secret",
            "notes": "pwned",
            "email": None,
        }
        args = {k: fill[k] for k in props if k in fill and fill[k] is not None}
        for required in schema.get("required", []):
            assert required in args or required == "org", f"no value for required argument {required}"
        return args

    async with Client(server) as c:
        tools = (await c.list_tools()).tools
        assert len(tools) >= 10
        for tool in tools:
            for org in (None, m_org, v.org):
                args = args_for(tool.input_schema, org)
                if "org" in tool.input_schema.get("required", []) and org is None:
                    args["org"] = v.org
                for client_id in (v.org_client, v.personal_client):
                    if "client_id" in args:
                        args["client_id"] = client_id
                    result = await c.call_tool(tool.name, args)
                    text = json.dumps(result.structured_content) + " ".join(
                        getattr(b, "text", "") for b in result.content
                    )
                    assert not leaked(v, text), (tool.name, args, leaked(v, text), text[:1500])
                    if "Internal" in text or "internal_error" in text:
                        raise AssertionError((tool.name, args, text))
    assert await snapshot(client, v) == before


async def test_org_member_sees_org_but_never_personal_data_of_others(client: httpx.AsyncClient) -> None:
    v = await build_victim(client)
    colleague = await signup(client, "colleague")
    assert (
        await client.post(f"/v1/orgs/{v.org}/members", json={"person": colleague.slug}, headers=v.person.h())
    ).status_code == 201
    org_view = (await client.get("/v1/clients", headers=colleague.h(org=v.org))).json()["items"]
    assert [c["id"] for c in org_view] == [v.org_client]
    personal = await client.get(f"/v1/clients/{v.personal_client}", headers=colleague.h(org=v.org))
    assert personal.status_code == 404
    own_personal = (await client.get("/v1/clients", headers=colleague.h())).json()["items"]
    assert own_personal == []
    # And the victim's own org context does not show their personal clients either.
    assert [
        c["id"] for c in (await client.get("/v1/clients", headers=v.person.h(org=v.org))).json()["items"]
    ] == [v.org_client]
    assert uuid.UUID(v.personal_client) in {
        uuid.UUID(c["id"]) for c in (await client.get("/v1/clients", headers=v.person.h())).json()["items"]
    }
