"""What the portal's Agents page needs from the public REST API: where the server is reached
(`GET /v1/meta`), the scopes a key may carry, and keys listed with their last use — each
person seeing only their own."""

from __future__ import annotations

import httpx

from core.uow import Database
from tests.conftest import make_org, signup
from tests.support.serving import app_client


async def test_meta_needs_no_credential_and_names_the_servers_own_url(
    client: httpx.AsyncClient, db: Database
) -> None:
    r = await client.get("/v1/meta")
    assert r.status_code == 200, r.text
    meta = r.json()
    # No ATLILITH_PUBLIC_URL in tests: http://HOST:PORT, the URL the MCP resource metadata
    # states (OAuth tokens are bound to it) — not whatever Host the request carried.
    own = f"http://{db.settings.host}:{db.settings.port}"
    assert meta["public_url_configured"] is False
    assert meta["public_url"] == own and meta["mcp_url"] == f"{own}/mcp"
    prm = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert prm["resource"] == meta["mcp_url"]
    other = (await client.get("/v1/meta", headers={"Host": "localhost:3040"})).json()
    assert other["mcp_url"] == f"{own}/mcp"
    assert "/v1/meta" in (await client.get("/openapi.json")).json()["paths"]


async def test_meta_names_the_origin_reached_when_bound_to_every_interface(db: Database) -> None:
    settings = db.settings.model_copy(update={"host": "0.0.0.0"})
    # http://0.0.0.0:PORT cannot be dialled: the client is told where it reached us.
    async with app_client(db, settings=settings, base_url="http://10.1.2.3:3040") as c:
        meta = (await c.get("/v1/meta")).json()
    assert meta["mcp_url"] == "http://10.1.2.3:3040/mcp"


async def test_meta_prefers_the_configured_public_url_behind_a_proxy(db: Database) -> None:
    settings = db.settings.model_copy(update={"public_url": "https://portal.example.com/"})
    # The proxy reaches the app at an internal address; clients must not be told that one.
    async with app_client(db, settings=settings, base_url="http://app.internal:3040") as c:
        meta = (await c.get("/v1/meta")).json()
    assert meta["public_url_configured"] is True
    assert meta["public_url"] == "https://portal.example.com"
    assert meta["mcp_url"] == "https://portal.example.com/mcp"


async def test_every_scope_meta_lists_is_one_a_key_may_carry(client: httpx.AsyncClient) -> None:
    scopes = [s["scope"] for s in (await client.get("/v1/meta")).json()["api_key_scopes"]]
    assert {"*", "tenancy:read", "tenancy:write", "bookings:read", "registry:read"} <= set(scopes)
    acct = await signup(client)
    r = await client.post("/v1/api-keys", json={"name": "all", "scopes": scopes}, headers=acct.h())
    assert r.status_code == 201, r.text
    assert sorted(r.json()["scopes"]) == sorted(scopes)


async def test_keys_show_their_last_use_and_stay_their_persons(client: httpx.AsyncClient) -> None:
    owner, other = await signup(client), await signup(client)
    org = await make_org(client, owner)
    created = await client.post(
        "/v1/api-keys", json={"name": "claude", "scopes": ["*"], "org": org}, headers=owner.h()
    )
    key = created.json()
    assert created.status_code == 201 and key["last_used_at"] is None

    assert (await client.get("/v1/me", headers=owner.h(token=key["token"]))).status_code == 200
    listed = (await client.get("/v1/api-keys", headers=owner.h())).json()["items"]
    assert [(k["id"], k["org"]["slug"]) for k in listed] == [(key["id"], org)]
    assert listed[0]["last_used_at"] is not None and "token" not in listed[0]

    # Another person, in either of their contexts, sees none of it and cannot revoke it.
    other_org = await make_org(client, other)
    for headers in (other.h(), other.h(org=other_org)):
        assert (await client.get("/v1/api-keys", headers=headers)).json()["items"] == []
        r = await client.delete(f"/v1/api-keys/{key['id']}", headers=headers)
        assert r.status_code == 404 and r.json()["code"] == "api_key_not_found" and r.json()["hint"]
    assert (await client.get("/v1/me", headers=owner.h(token=key["token"]))).status_code == 200
