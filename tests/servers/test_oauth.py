"""The OAuth 2.1 authorization server MCP hosts sign in through, over HTTP as a client uses it:
metadata, registration, PKCE, codes, resource binding, refresh rotation, revocation, and the
person's side (consent and connected apps), each person seeing only their own."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.config import Settings
from core.oauth.documents import is_document_client_id
from core.relay import Relay
from core.uow import Database
from core.utilities import sha256_hex
from servers.app import create_app
from tests.conftest import join_org, make_org, running, signup
from tests.support.mcp import mcp_client, tool_error
from tests.support.messaging import inbound, outbox
from tests.support.oauth import (
    REDIRECT,
    approve,
    authorize,
    connect,
    exchange,
    mcp_status,
    pkce,
    query,
    refresh,
    register,
    request_id,
)
from tests.support.registry import install
from tests.support.sql import system_sql


async def whoami(app: Any, token: str, **args: Any) -> Any:
    async with mcp_client(app, token) as c:
        return await c.call_tool("whoami", args)


# --- discovery and registration -------------------------------------------------------------------


async def test_metadata_points_the_resource_to_its_authorization_server(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    meta = (await client.get("/.well-known/oauth-authorization-server")).json()
    issuer = settings.base_url
    assert meta["issuer"] == issuer
    assert meta["authorization_endpoint"] == f"{issuer}/authorize"
    assert meta["token_endpoint"] == f"{issuer}/token"
    assert meta["registration_endpoint"] == f"{issuer}/register"
    assert meta["revocation_endpoint"] == f"{issuer}/revoke"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert set(meta["grant_types_supported"]) == {"authorization_code", "refresh_token"}
    assert meta["client_id_metadata_document_supported"] is True
    assert "none" in meta["token_endpoint_auth_methods_supported"]
    resource = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert resource["resource"] == settings.mcp_resource_url
    assert resource["authorization_servers"] == [issuer]


async def test_registration_keeps_only_a_hash_of_the_secret(client: httpx.AsyncClient, db: Database) -> None:
    public = await register(client)
    assert public["token_endpoint_auth_method"] == "none" and "client_secret" not in public
    r = await client.post("/register", json={"client_name": "Confidential", "redirect_uris": [REDIRECT]})
    assert r.status_code == 201, r.text
    confidential = r.json()
    secret = confidential["client_secret"]
    async with db.system() as uow:
        stored = (
            await uow.session.execute(
                text("SELECT secret_hash, metadata::text FROM platform.oauth_clients WHERE client_id = :c"),
                {"c": confidential["client_id"]},
            )
        ).one()
    assert stored.secret_hash == sha256_hex(secret) and secret not in stored.metadata

    # The secret is checked at the token endpoint (by its hash): a wrong one is refused.
    form = {
        "grant_type": "authorization_code",
        "code": "x",
        "redirect_uri": REDIRECT,
        "code_verifier": "v" * 43,
    }
    wrong = await client.post(
        "/token", data={**form, "client_id": confidential["client_id"], "client_secret": "nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    right = await client.post(
        "/token", data={**form, "client_id": confidential["client_id"], "client_secret": secret}
    )
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant"  # authenticated


@pytest.mark.parametrize(
    "redirect",
    [
        "http://evil.example/callback",
        "javascript:alert(1)",
        "https://app.example/cb#frag",
        "file:///etc/passwd",
    ],
)
async def test_registration_refuses_unsafe_redirect_uris(client: httpx.AsyncClient, redirect: str) -> None:
    r = await client.post(
        "/register", json={"redirect_uris": [redirect], "token_endpoint_auth_method": "none"}
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"] in {"invalid_redirect_uri", "invalid_client_metadata"}


async def test_registration_accepts_native_and_web_redirects(client: httpx.AsyncClient) -> None:
    for redirect in (
        "https://claude.ai/api/mcp/auth_callback",
        "com.example.app:/oauth",
        "http://localhost:5173/cb",
    ):
        await register(client, redirect=redirect)


# --- authorize: PKCE, redirect URIs, resource -----------------------------------------------------


async def test_authorize_requires_pkce_s256(client: httpx.AsyncClient) -> None:
    c = (await register(client))["client_id"]
    p = pkce()
    missing = await authorize(client, c, p, code_challenge="")
    plain = await authorize(client, c, p, code_challenge_method="plain")
    not_a_hash = await authorize(client, c, p, code_challenge="short")
    for r in (missing, plain, not_a_hash):
        assert r.status_code == 302, r.text
        back = r.headers["location"]
        assert back.startswith(REDIRECT) and query(back)["error"] == "invalid_request", back


async def test_authorize_refuses_an_unregistered_redirect_uri(client: httpx.AsyncClient) -> None:
    c = (await register(client))["client_id"]
    r = await authorize(client, c, pkce(), redirect_uri="http://127.0.0.1:1/elsewhere")
    # Never redirected to an unknown place: answered to the browser itself.
    assert r.status_code == 400 and "location" not in r.headers


async def test_a_token_for_another_resource_is_never_minted(client: httpx.AsyncClient) -> None:
    c = (await register(client))["client_id"]
    r = await authorize(client, c, pkce(), resource="https://other.example/mcp")
    assert r.status_code == 302 and query(r.headers["location"])["error"] == "invalid_target"
    t = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": "x",
            "client_id": c,
            "resource": "https://other.example/mcp",
        },
    )
    assert t.status_code == 400 and t.json()["error"] == "invalid_target"


async def test_scopes_default_to_the_registration_and_limit_what_tools_may_do(
    app: Any, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    c = (await register(client, scope="tenancy:read"))["client_id"]
    p = pkce()
    rid = await request_id(client, c, p)
    seen = (await client.get(f"/v1/oauth/requests/{rid}", headers=a.h())).json()
    assert [s["name"] for s in seen["scopes"]] == ["tenancy:read"]
    code = (await approve(client, a.h(), rid))["code"]
    tokens = (await exchange(client, c, code, p.verifier)).json()
    assert tokens["scope"] == "tenancy:read"
    assert not (await whoami(app, tokens["access_token"])).is_error
    async with mcp_client(app, tokens["access_token"]) as session:
        refused = await session.call_tool("clients_create", {"name": "Not allowed"})
    assert tool_error(refused)["code"] == "missing_scope"
    wider = await authorize(client, c, pkce(), scope="tenancy:write")
    assert query(wider.headers["location"])["error"] == "invalid_scope"
    unknown = await authorize(client, (await register(client))["client_id"], pkce(), scope="everything")
    assert query(unknown.headers["location"])["error"] == "invalid_scope"


# --- the whole flow, codes and verifiers ---------------------------------------------------------


async def test_consent_in_an_org_gives_a_token_that_acts_there(app: Any, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    registered = await register(client, name="Claude Code")
    p = pkce()
    rid = await request_id(client, registered["client_id"], p, scope="tenancy:read tenancy:write")
    seen = (await client.get(f"/v1/oauth/requests/{rid}", headers=a.h())).json()
    assert seen["client"]["name"] == "Claude Code"
    assert seen["redirect_host"] == "127.0.0.1:33418"
    assert [s["name"] for s in seen["scopes"]] == ["tenancy:read", "tenancy:write"]
    back = await approve(client, a.h(), rid, org)
    assert back["iss"] == app.state.settings.base_url and back["state"].startswith("st-")
    r = await exchange(client, registered["client_id"], back["code"], p.verifier)
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"].startswith("ator_")
    assert tokens["scope"] == "tenancy:read tenancy:write"

    me = await whoami(app, tokens["access_token"])
    assert not me.is_error, me
    assert me.structured_content["context"]["org"]["slug"] == org
    assert me.structured_content["credential"]["kind"] == "oauth"
    personal = await whoami(app, tokens["access_token"], org="personal")
    assert personal.structured_content["context"]["kind"] == "personal"

    # REST does not take OAuth tokens: they are for the MCP resource only.
    rest = await client.get("/v1/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert rest.status_code == 401 and rest.json()["code"] == "token_wrong_audience"

    listed = (await client.get("/v1/oauth/connections", headers=a.h())).json()["items"]
    assert [(c["client_name"], c["context"]) for c in listed] == [
        ("Claude Code", {"kind": "org", "org": org})
    ]
    assert listed[0]["last_used_at"] is not None


async def test_a_code_is_single_use_and_a_replay_revokes_its_tokens(
    app: Any, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    c = (await register(client))["client_id"]
    p = pkce()
    code = (await approve(client, a.h(), await request_id(client, c, p)))["code"]
    wrong = await exchange(client, c, code, pkce().verifier)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    first = await exchange(client, c, code, p.verifier)
    assert first.status_code == 200, first.text
    access = first.json()["access_token"]
    assert not (await whoami(app, access)).is_error
    again = await exchange(client, c, code, p.verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert await mcp_status(client, access) == 401


async def test_the_code_is_bound_to_its_client_and_redirect_uri(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    c = (await register(client))["client_id"]
    other = (await register(client))["client_id"]
    p = pkce()
    code = (await approve(client, a.h(), await request_id(client, c, p)))["code"]
    stolen = await exchange(client, other, code, p.verifier)
    assert stolen.status_code == 400 and stolen.json()["error"] == "invalid_grant"
    moved = await exchange(client, c, code, p.verifier, redirect_uri="http://127.0.0.1:33418/other")
    # RFC 6749 5.2: the grant does not match the redirection URI it was issued for.
    assert moved.status_code == 400 and moved.json()["error"] == "invalid_grant", moved.text
    # A grant type this server does not grant is said so (RFC 6749 5.2), not a malformed request.
    for grant in ("password", "urn:ietf:params:oauth:grant-type:jwt-bearer"):
        r = await client.post(
            "/token", data={"grant_type": grant, "client_id": c, "username": "a", "password": "b"}
        )
        assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type", r.text
        assert r.json()["error_description"] == "this server grants only authorization_code and refresh_token"


async def test_deny_sends_access_denied_back(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    c = (await register(client))["client_id"]
    rid = await request_id(client, c, pkce())
    r = await client.post(f"/v1/oauth/requests/{rid}/deny", headers=a.h())
    assert r.status_code == 200
    back = r.json()["redirect_to"]
    assert back.startswith(REDIRECT) and query(back)["error"] == "access_denied"
    assert (await client.post(f"/v1/oauth/requests/{rid}/approve", json={}, headers=a.h())).status_code == 404


async def test_approving_for_an_org_needs_membership(client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    org_of_b = await make_org(client, b)
    rid = await request_id(client, (await register(client))["client_id"], pkce())
    r = await client.post(f"/v1/oauth/requests/{rid}/approve", json={"org": org_of_b}, headers=a.h())
    assert r.status_code == 403 and r.json()["code"] == "not_a_member"


async def test_only_a_signed_in_person_decides(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    key = (await client.post("/v1/api-keys", json={"name": "k", "scopes": ["*"]}, headers=a.h())).json()[
        "token"
    ]
    rid = await request_id(client, (await register(client))["client_id"], pkce())
    r = await client.get(f"/v1/oauth/requests/{rid}", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.json()["code"] == "session_required"
    _, tokens = await connect(client, a.h())
    oauth = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/v1/oauth/connections", headers=oauth)).status_code == 401


# --- refresh, revocation, audience ---------------------------------------------------------------


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_connection(
    app: Any, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    c, tokens = await connect(client, a.h())
    r = await refresh(client, c, tokens["refresh_token"])
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert not (await whoami(app, rotated["access_token"])).is_error
    reused = await refresh(client, c, tokens["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # A leaked refresh token ends the whole connection: the rotated tokens die with it.
    assert await mcp_status(client, rotated["access_token"]) == 401
    assert (await refresh(client, c, rotated["refresh_token"])).status_code == 400
    assert (await client.get("/v1/oauth/connections", headers=a.h())).json()["items"] == []


async def test_revocation_endpoint_ends_the_connection(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    c, tokens = await connect(client, a.h())
    assert await mcp_status(client, tokens["access_token"]) != 401
    r = await client.post("/revoke", data={"token": tokens["access_token"], "client_id": c})
    assert r.status_code == 200
    assert await mcp_status(client, tokens["access_token"]) == 401
    assert (await refresh(client, c, tokens["refresh_token"])).status_code == 400
    # RFC 7009: an unknown token is not an error.
    assert (await client.post("/revoke", data={"token": "atoa_nothing", "client_id": c})).status_code == 200


async def test_a_token_minted_for_another_resource_is_refused_at_mcp(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    """Same database, another public URL (another deployment of the resource): the token's
    audience is the first one's MCP endpoint, so the second refuses it."""
    a = await signup(client)
    _, tokens = await connect(client, a.h())
    other_settings = settings.model_copy(update={"public_url": "http://localhost:3999"})
    other_db = Database(other_settings)
    other = create_app(other_settings, db=other_db, run_relay=False)
    try:
        async with running(other):
            transport = httpx.ASGITransport(app=other)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as there:
                assert await mcp_status(there, tokens["access_token"]) == 401
                assert await mcp_status(there, a.token) != 401  # a session token is still fine
        assert await mcp_status(client, tokens["access_token"]) != 401
    finally:
        await other_db.dispose()


async def test_an_issuer_that_cannot_be_one_leaves_the_server_running_without_oauth(
    settings: Settings,
) -> None:
    """A container bound to 0.0.0.0 without ATLILITH_PUBLIC_URL: plain http beyond loopback
    cannot be an issuer (RFC 8414); the server still starts, without the OAuth endpoints."""
    bare = settings.model_copy(update={"host": "0.0.0.0"})
    bare_db = Database(bare)
    try:
        application = create_app(bare, db=bare_db, run_relay=False)
        async with running(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                assert (await c.get("/.well-known/oauth-authorization-server")).status_code == 404
                assert (await c.get("/health")).status_code == 200
    finally:
        await bare_db.dispose()


# --- the person's side: isolation, revocation, live checks ---------------------------------------


async def test_a_second_person_can_neither_see_nor_decide_anothers_request(client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    rid = await request_id(client, (await register(client))["client_id"], pkce())
    assert (await client.get(f"/v1/oauth/requests/{rid}", headers=a.h())).status_code == 200
    for r in (
        await client.get(f"/v1/oauth/requests/{rid}", headers=b.h()),
        await client.post(f"/v1/oauth/requests/{rid}/approve", json={"org": None}, headers=b.h()),
        await client.post(f"/v1/oauth/requests/{rid}/deny", headers=b.h()),
    ):
        assert r.status_code == 404 and r.json()["code"] == "oauth_request_not_found"
    assert (await client.get("/v1/oauth/requests/unknown-request", headers=a.h())).status_code == 404


async def test_connections_are_their_persons_and_revoking_one_is_effective_at_once(
    client: httpx.AsyncClient,
) -> None:
    a, b = await signup(client), await signup(client)
    _, tokens = await connect(client, a.h())
    mine = (await client.get("/v1/oauth/connections", headers=a.h())).json()["items"]
    assert len(mine) == 1
    assert (await client.get("/v1/oauth/connections", headers=b.h())).json()["items"] == []
    theirs = await client.delete(f"/v1/oauth/connections/{mine[0]['id']}", headers=b.h())
    assert theirs.status_code == 404
    assert await mcp_status(client, tokens["access_token"]) != 401
    gone = await client.delete(f"/v1/oauth/connections/{mine[0]['id']}", headers=a.h())
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert await mcp_status(client, tokens["access_token"]) == 401
    assert (await client.get("/v1/oauth/connections", headers=a.h())).json()["items"] == []


async def test_membership_removal_and_suspension_apply_on_the_next_call(
    app: Any, client: httpx.AsyncClient, db: Database
) -> None:
    owner, member = await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, member)
    _, tokens = await connect(client, member.h(), org)
    me = await whoami(app, tokens["access_token"])
    assert me.structured_content["context"]["org"]["slug"] == org
    await client.delete(f"/v1/orgs/{org}/members/{member.slug}", headers=owner.h(org))
    # At once, before any event handler ran: the live membership check.
    assert tool_error(await whoami(app, tokens["access_token"]))["code"] == "not_a_member"
    assert not (await whoami(app, tokens["access_token"], org="personal")).is_error
    # Then the removal's handler ends the connection made for that org altogether.
    await Relay(db).drain()
    assert await mcp_status(client, tokens["access_token"]) == 401
    assert (await client.get("/v1/oauth/connections", headers=member.h())).json()["items"] == []
    [ended] = await system_sql(
        db,
        "SELECT g.id, g.client_id, g.revoked_reason FROM platform.oauth_grants g"
        " JOIN platform.persons p ON p.id = g.person_id WHERE p.slug = :s",
        {"s": member.slug},
    )
    assert ended.revoked_reason == "membership_ended"
    [revoked] = await outbox(db, "platform/oauth_connection.revoked", connection_id=str(ended.id))
    assert (revoked["client_id"], revoked["reason"]) == (ended.client_id, "membership_ended")
    _, tokens = await connect(client, member.h())
    async with db.system() as uow:
        await uow.session.execute(
            text("UPDATE platform.persons SET status = 'suspended' WHERE slug = :s"), {"s": member.slug}
        )
    assert await mcp_status(client, tokens["access_token"]) == 401


async def test_an_oauth_host_is_an_agent_for_the_thread_agent_mode(
    app: Any, client: httpx.AsyncClient
) -> None:
    """A connected host gets no more than an API key: a thread's `draft_only` mode applies."""
    a = await signup(client)
    await install(client, a, "messaging")
    tid = (await inbound(client, a.h(), channel="portal", external_id="q-oauth", body="Friday?"))["results"][
        0
    ]["thread_id"]
    _, tokens = await connect(client, a.h())
    async with mcp_client(app, tokens["access_token"]) as session:
        sent = await session.call_tool("messaging_send", {"thread_id": tid, "body": "Yes!"})
        assert tool_error(sent)["code"] == "agent_mode_draft_only"


# --- client ID metadata documents ----------------------------------------------------------------


@contextmanager
def serving(documents: dict[str, bytes]) -> Iterator[str]:
    """A loopback web server publishing the given paths (a client's own site)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = documents.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body or b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
async def site() -> AsyncIterator[tuple[str, dict[str, bytes]]]:
    documents: dict[str, bytes] = {}
    with serving(documents) as base:
        yield base, documents


async def test_a_client_id_metadata_document_stands_for_registration(
    client: httpx.AsyncClient, site: tuple[str, dict[str, bytes]]
) -> None:
    base, documents = site
    client_id = f"{base}/oauth/client.json"
    documents["/oauth/client.json"] = json.dumps(
        {"client_id": client_id, "client_name": "Doc Host", "redirect_uris": [REDIRECT]}
    ).encode()
    a = await signup(client)
    p = pkce()
    rid = await request_id(client, client_id, p)
    assert (await client.get(f"/v1/oauth/requests/{rid}", headers=a.h())).json()["client"][
        "name"
    ] == "Doc Host"
    code = (await approve(client, a.h(), rid))["code"]
    assert (await exchange(client, client_id, code, p.verifier)).status_code == 200


@pytest.mark.parametrize(
    "document",
    [
        {"client_id": "https://someone-else.example/client.json", "redirect_uris": [REDIRECT]},
        {
            "redirect_uris": [REDIRECT],
            "client_id": "SELF",
            "token_endpoint_auth_method": "client_secret_post",
        },
        {"client_id": "SELF", "redirect_uris": [REDIRECT], "padding": "x" * 6000},
        {"client_id": "SELF", "redirect_uris": ["http://evil.example/cb"]},
    ],
)
async def test_a_document_that_does_not_vouch_for_itself_is_refused(
    client: httpx.AsyncClient, site: tuple[str, dict[str, bytes]], document: dict[str, Any]
) -> None:
    base, documents = site
    path = f"/c/{abs(hash(json.dumps(document)))}.json"
    client_id = base + path
    documents[path] = json.dumps({k: (client_id if v == "SELF" else v) for k, v in document.items()}).encode()
    r = await authorize(client, client_id, pkce())
    assert r.status_code == 400 and "location" not in r.headers, r.text


async def test_documents_are_fetched_over_https_only_in_production(settings: Settings) -> None:
    production = settings.model_copy(update={"env": "production"})
    assert is_document_client_id("https://host.example/client.json", production)
    assert not is_document_client_id("http://127.0.0.1:8000/client.json", production)
    assert is_document_client_id("http://127.0.0.1:8000/client.json", settings)
    assert not is_document_client_id("https://host.example/", settings)
    assert not is_document_client_id("https://user:pw@host.example/c.json", settings)
    from core.oauth.documents import fetch_client_document
    from core.oauth.errors import OAuthError

    # A public name that resolves to a private address is refused before any request.
    with pytest.raises(OAuthError):
        await fetch_client_document("https://localhost/client.json", production)
    await asyncio.sleep(0)


async def test_spent_requests_codes_and_tokens_are_purged(client: httpx.AsyncClient, db: Database) -> None:
    import datetime as dt

    from core.events import ScheduledRun
    from core.oauth.handlers import purge_spent_oauth_rows

    a = await signup(client)
    _, tokens = await connect(client, a.h())
    mine = {
        "oauth_requests": "person_id = :p",
        "oauth_codes": "grant_id IN (SELECT id FROM platform.oauth_grants WHERE person_id = :p)",
        "oauth_tokens": "grant_id IN (SELECT id FROM platform.oauth_grants WHERE person_id = :p)",
    }

    async def count(table: str) -> int:
        async with db.system() as uow:
            sql = f"SELECT count(*) FROM platform.{table} WHERE {mine[table]}"
            return int((await uow.session.execute(text(sql), {"p": a.id})).scalar_one())

    assert all([await count(t) for t in mine])
    async with db.system() as uow:
        for table, where in mine.items():
            sql = f"UPDATE platform.{table} SET expires_at = now() - interval '2 days' WHERE {where}"
            await uow.session.execute(text(sql), {"p": a.id})
    async with db.system() as uow:
        await purge_spent_oauth_rows(ScheduledRun(name="oauth.purge", fire_at=dt.datetime.now(dt.UTC)), uow)
    assert [await count(t) for t in mine] == [0, 0, 0]
    assert await mcp_status(client, tokens["access_token"]) == 401
