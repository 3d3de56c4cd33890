"""The MCP door: tool shapes, filters, errors, and the three transports."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import structlog
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR

from core.uow import Database
from servers.app import create_app
from servers.mcp import build_server
from tests.conftest import make_org, signup
from tests.support.mcp import mcp_client, mcp_http, tool_annotations, tool_error
from tests.support.registry import install
from tests.support.serving import free_port, serving

ROOT = Path(__file__).resolve().parents[2]


def text_of(result: Any) -> str:
    return " ".join(getattr(b, "text", "") for b in result.content)


async def test_tools_are_flat_typed_annotated_and_ordered(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as c:
        tools = (await c.list_tools()).tools
    names = [t.name for t in tools]
    assert names == sorted(names) and len(names) == len(set(names))
    assert {
        "whoami",
        "orgs_list",
        "orgs_create",
        "org_members_list",
        "org_members_invite",
        "org_members_update",
        "org_members_remove",
        "brands_list",
        "clients_list",
        "clients_create",
    } <= set(names)
    for t in tools:
        assert t.description and len(t.description) > 40, t.name
        ann = t.annotations
        # Every hint that means something is stated: the spec defines destructive and idempotent
        # for writes only, and idempotentHint's default (false) goes unsaid.
        assert ann is not None and None not in (ann.read_only_hint, ann.open_world_hint), t.name
        if ann.read_only_hint:
            assert ann.destructive_hint is None and ann.idempotent_hint is None, t.name
        else:
            assert ann.destructive_hint is not None and ann.idempotent_hint in (True, None), t.name
        assert t.output_schema and t.output_schema.get("type") == "object", t.name
        for arg, prop in t.input_schema.get("properties", {}).items():
            types = prop.get("type")
            kinds = set(types) if isinstance(types, list) else {types}
            kinds |= {o.get("type") for o in prop.get("anyOf", [])}
            assert "object" not in kinds and "$ref" not in json.dumps(prop), (t.name, arg)
        # Listing or creating orgs, and the platform admin's tools, are person-level: no context.
        if t.name not in {"orgs_list", "orgs_create"} and not t.name.startswith("admin_"):
            assert "org" in t.input_schema["properties"], t.name
    create = next(t for t in tools if t.name == "clients_create")
    assert set(create.input_schema["properties"]) == {
        "name",
        "email",
        "phone",
        "notes",
        "org",
        "idempotency_key",
    }
    assert create.input_schema["required"] == ["name"]
    remove = next(t for t in tools if t.name == "org_members_remove")
    assert (
        tool_annotations(remove).destructive_hint is True and tool_annotations(remove).read_only_hint is False
    )
    who = next(t for t in tools if t.name == "whoami")
    assert tool_annotations(who).read_only_hint is True and tool_annotations(who).destructive_hint is None


async def test_toolsets_and_read_only_filter_the_list(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token, read_only=True)) as c:
        tools = (await c.list_tools()).tools
    assert tools and all(tool_annotations(t).read_only_hint for t in tools)
    assert "clients_create" not in {t.name for t in tools} and "whoami" in {t.name for t in tools}
    with pytest.raises(ValueError, match="unknown toolsets"):
        build_server(db, static_token=a.token, toolset_names=["nope"])


async def test_tool_calls_act_in_the_chosen_context_checked_live(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner, member = await signup(client), await signup(client)
    org = await make_org(client, owner)
    async with Client(build_server(db, static_token=owner.token)) as c:
        invited = await c.call_tool("org_members_invite", {"org": org, "person": member.slug})
        assert not invited.is_error, text_of(invited)
        assert invited.structured_content["invitee"]["slug"] == member.slug
        assert invited.structured_content["status"] == "pending"
        # An invitation grants nothing until the person accepts it themselves.
        assert (await client.get(f"/v1/orgs/{org}", headers=member.h())).json()["code"] == "not_a_member"
    accepted = await client.post(
        f"/v1/invitations/{invited.structured_content['id']}/accept", headers=member.h()
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["person"]["slug"] == member.slug

    async with Client(build_server(db, static_token=member.token)) as c:
        made = await c.call_tool("clients_create", {"name": "Ada", "email": "ada@example.com", "org": org})
        assert not made.is_error and made.structured_content["org_id"]
        personal = await c.call_tool("clients_list", {})
        assert personal.structured_content["items"] == []
        in_org = await c.call_tool("clients_list", {"org": org, "q": "ada"})
        assert [x["name"] for x in in_org.structured_content["items"]] == ["Ada"]
        me = await c.call_tool("whoami", {"org": org})
        assert me.structured_content["context"]["role"] == "member"

        async with Client(build_server(db, static_token=owner.token)) as o:
            gone = await o.call_tool("org_members_remove", {"org": org, "person": member.slug})
            assert not gone.is_error and gone.structured_content["role"] == "member"

        refused = await c.call_tool("clients_list", {"org": org})
        err = tool_error(refused)
        assert err["code"] == "not_a_member" and err["hint"]


async def test_errors_carry_code_and_hint_and_no_internals(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token)) as c:
        bad = tool_error(await c.call_tool("clients_create", {"name": "X", "phone": "12345"}))
        assert bad["code"] == "invalid_phone" and bad["fields"][0]["path"] == "phone"
        # The SDK's own argument check answers in the same shape: fields and a hint, no dump.
        wrong_type = await c.call_tool("clients_get", {"client_id": "not-a-uuid"})
        wrong = tool_error(wrong_type)
        assert wrong["code"] == "invalid_arguments" and "clients_get" in wrong["hint"]
        assert [f["path"] for f in wrong["fields"]] == ["client_id"]
        assert "pydantic" not in text_of(wrong_type) and "validation error" not in text_of(wrong_type)
        missing = tool_error(await c.call_tool("clients_get", {}))
        assert missing["fields"] == [{"path": "client_id", "problem": "required"}]
        member_only = tool_error(await c.call_tool("org_members_list", {"org": "no-such-org"}))
        assert member_only["code"] == "not_a_member"
        dup_slug = tool_error(await c.call_tool("orgs_create", {"slug": "admin", "name": "X"}))
        assert dup_slug["code"] == "invalid_arguments" and dup_slug["fields"][0]["path"] == "slug"
        # An argument the tool does not take is refused, never dropped: a mistyped `org` would
        # otherwise act in the personal context.
        typo = tool_error(await c.call_tool("clients_create", {"name": "Typo", "organization": "x"}))
        assert typo["code"] == "invalid_arguments"
        assert typo["fields"] == [{"path": "organization", "problem": "not an argument of this tool"}]
        assert "`org`" in typo["hint"] and "`organization`" in typo["hint"]
        listed = await c.call_tool("clients_list", {})
        assert "Typo" not in [x["name"] for x in listed.structured_content["items"]]
        # An unknown tool is the protocol error the spec names, not a tool result.
        with pytest.raises(MCPError) as unknown:
            await c.call_tool("no_such_tool", {})
        assert unknown.value.code == INVALID_PARAMS


async def test_idempotency_key_on_tools(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token)) as c:
        args = {"name": "Once", "idempotency_key": "k-1"}
        r1, r2 = await asyncio.gather(
            c.call_tool("clients_create", args), c.call_tool("clients_create", args)
        )
        assert r1.structured_content == r2.structured_content
        listed = await c.call_tool("clients_list", {"q": "Once"})
        assert len(listed.structured_content["items"]) == 1


async def test_tool_calls_log_with_a_trace_id(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token)) as c:
        with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            await c.call_tool("whoami", {})
    calls = [e for e in logs if e.get("event") == "tool_call"]
    assert calls and calls[0]["tool"] == "whoami" and len(calls[0]["trace_id"]) == 32


# --- over HTTP --------------------------------------------------------------------------------


async def test_http_mcp_requires_a_valid_bearer(app: Any, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    init = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    none = await client.post("/mcp", json=init, headers={"Accept": "application/json, text/event-stream"})
    assert none.status_code == 401
    # No credential: where to start OAuth, and no error code (RFC 6750, 3.1).
    assert re.fullmatch(r'Bearer resource_metadata="[^"]+/mcp"', none.headers["WWW-Authenticate"])
    assert none.json()["code"] == "missing_credential"
    meta = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert meta["resource"].endswith("/mcp")
    assert meta["resource"] in none.headers["WWW-Authenticate"].replace(
        "/.well-known/oauth-protected-resource", ""
    )

    # A refused one says why, in the REST door's words.
    unknown_key = "atl_aaaaaaaa_" + "x" * 40
    garbage = "not.a.token"
    await client.post("/v1/auth/logout", headers=a.h())
    for token, code in (
        (unknown_key, "api_key_invalid"),
        (garbage, "token_invalid"),
        (a.token, "session_revoked"),
    ):
        refused = await client.post("/mcp", json=init, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, refused.text
        header = refused.headers["WWW-Authenticate"]
        assert header.startswith(
            f'Bearer error="invalid_token", error_description="{code}", resource_metadata='
        )
        body = refused.json()
        assert body["code"] == code and body["error"] == "invalid_token" and body["message"]
        assert "[[" not in refused.text and int(refused.headers["content-length"]) == len(refused.content)


async def test_http_mcp_with_session_token_and_api_key(app: Any, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    key = (
        await client.post("/v1/api-keys", json={"name": "agent", "scopes": ["*"], "org": org}, headers=a.h())
    ).json()
    for token, expect_org in ((a.token, None), (key["token"], org)):
        async with mcp_client(app, token) as c:
            me = await c.call_tool("whoami", {})
            assert not me.is_error, text_of(me)
            ctx = me.structured_content["context"]
            assert (ctx["org"]["slug"] if ctx["org"] else None) == expect_org


async def test_an_org_bound_key_lists_its_persons_orgs_as_rest_does(
    app: Any, client: httpx.AsyncClient
) -> None:
    """`orgs_list` concerns the person whatever the context, as `GET /v1/orgs`: an org-bound key
    was refused there (`api_key_org_mismatch`, with a hint to omit an `org` it never sent)."""
    a = await signup(client)
    org = await make_org(client, a)
    key = (
        await client.post("/v1/api-keys", json={"name": "agent", "scopes": ["*"], "org": org}, headers=a.h())
    ).json()["token"]
    rest = (await client.get("/v1/orgs", headers={"Authorization": f"Bearer {key}"})).json()["items"]
    async with mcp_client(app, key) as c:
        listed = await c.call_tool("orgs_list", {})
        assert not listed.is_error, text_of(listed)
        assert [o["slug"] for o in listed.structured_content["items"]] == [o["slug"] for o in rest] == [org]


async def test_the_org_header_is_the_context_of_calls_that_name_none(
    app: Any, client: httpx.AsyncClient
) -> None:
    """`X-Atlilith-Org` on /mcp, as on every REST route: the context of a tool call without `org`
    (it was ignored: a host set up with it wrote in the personal context). An `org` argument
    still wins; an org the person is not a member of is refused, never ignored."""
    a, stranger = await signup(client), await signup(client)
    org, theirs = await make_org(client, a), await make_org(client, stranger)

    async def whoami(header: str, args: dict[str, Any]) -> Any:
        http = mcp_http(app, a.token)
        http.headers["X-Atlilith-Org"] = header
        async with Client(streamable_http_client("http://testserver/mcp", http_client=http)) as c:
            return await c.call_tool("whoami", args)

    def org_of(result: Any) -> str | None:
        assert not result.is_error, text_of(result)
        context = result.structured_content["context"]
        return context["org"]["slug"] if context["org"] else None

    assert org_of(await whoami(org.upper(), {})) == org
    assert org_of(await whoami(org, {"org": "personal"})) is None
    refused = await whoami(theirs, {})
    assert refused.is_error and tool_error(refused)["code"] == "not_a_member"
    async with mcp_http(app, a.token) as raw:
        for header in ("Not A Slug", "x" * 5000):
            r = await raw.post(
                "/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={"Accept": "application/json, text/event-stream", "X-Atlilith-Org": header},
            )
            assert r.status_code == 400 and r.json()["code"] == "invalid_org_header", r.text[:200]
            assert len(r.text) < 1000  # the header is not echoed whole


async def test_http_mcp_refuses_unknown_hosts(app: Any, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    async with mcp_http(app, a.token, host="evil.example") as raw:
        r = await raw.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
        assert r.status_code == 421


async def test_a_body_that_is_no_json_rpc_message_is_refused_without_validator_internals(
    app: Any, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    accept = {"Accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with mcp_http(app, a.token) as raw:
        for body in ("[]", '{"foo": 1}', '[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]'):
            for protocol in ({}, {"MCP-Protocol-Version": "2026-07-28"}):
                r = await raw.post("/mcp", content=body, headers=accept | protocol)
                assert r.status_code == 400, (body, protocol, r.text)
                error = r.json()["error"]
                assert error["code"] == INVALID_REQUEST, (body, protocol, error)
                assert "single JSON-RPC request or notification object" in error["message"]
                assert "pydantic" not in r.text and "validation error" not in r.text.lower()
        # Anything else answered with a 400 stays as the SDK words it.
        unparsable = await raw.post("/mcp", content="nope", headers=accept)
        assert unparsable.status_code == 400 and unparsable.json()["error"]["code"] == PARSE_ERROR


async def test_an_org_argument_no_slug_could_be_is_an_invalid_argument_not_a_500(
    app: Any, client: httpx.AsyncClient
) -> None:
    """The request's `org` is read from the raw body to bind the context early: a NUL or a lone
    surrogate there once reached SQL (a 500 that killed the client's session), and a body
    nested past the parser's depth raised past it."""
    a = await signup(client)
    routing = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "whoami"}
    headers = {"Accept": "application/json, text/event-stream", "content-type": "application/json"} | routing
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    async with mcp_http(app, a.token) as raw:
        for org in ("co\\u0000tte", "\\ud800"):
            body = (
                '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami",'
                f' "arguments": {{"org": "{org}"}}, "_meta": {json.dumps(envelope)}}}}}'
            )
            r = await raw.post("/mcp", content=body, headers=headers)
            assert r.status_code == 200, (org, r.status_code, r.text[:200])
            result = r.json()["result"]
            assert (
                result["isError"] and json.loads(result["content"][0]["text"])["code"] == "invalid_arguments"
            )
        deep = (
            '{"method": "tools/call", "params": {"arguments": {"org": '
            + "[" * 100_000
            + "]" * 100_000
            + "}}}"
        )
        r = await raw.post("/mcp", content=deep, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == PARSE_ERROR


async def test_real_http_server_round_trip(db: Database, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    port = free_port()
    settings = db.settings.model_copy(update={"port": port})
    app = create_app(settings, db=db, run_relay=False)
    async with serving(app, port, lifespan="on"):
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {a.token}"})
        async with Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as c:
            made = await c.call_tool("clients_create", {"name": "Over The Wire"})
            assert not made.is_error, text_of(made)
            got = await c.call_tool("clients_get", {"client_id": made.structured_content["id"]})
            assert got.structured_content["name"] == "Over The Wire"


async def test_real_stdio_subprocess(db: Database, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    settings = db.settings
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "servers.cli", "mcp"],
        cwd=str(ROOT),
        env={
            "ATLILITH_TOKEN": a.token,
            "DATABASE_URL": settings.database_url or "",
            "ATLILITH_JWT_SECRET": settings.jwt_secret or "",
            "ATLILITH_DATA_DIR": str(settings.data_dir),
            "ATLILITH_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
            "ATLILITH_PUBLIC_URL": "https://agents.example.test",
        },
    )
    async with Client(params) as c:
        # The configured public URL, not a guess from the default port.
        assert c.server_info is not None and c.server_info.website_url == "https://agents.example.test"
        names = [t.name for t in (await c.list_tools()).tools]
        assert "whoami" in names
        me = await c.call_tool("whoami", {"org": org})
        assert me.structured_content["person"]["slug"] == a.slug
        assert me.structured_content["context"]["org"]["slug"] == org


async def test_stdio_refuses_a_bad_token(db: Database) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "servers.cli",
        "mcp",
        cwd=str(ROOT),
        env={
            "ATLILITH_TOKEN": "garbage",
            "DATABASE_URL": db.settings.database_url or "",
            "ATLILITH_JWT_SECRET": db.settings.jwt_secret or "",
            "PYTHONPATH": str(ROOT),
            "ATLILITH_DATA_DIR": str(db.settings.data_dir),
            "PATH": "/usr/bin:/bin",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"token_invalid" in err and out == b""


async def test_default_tool_list_stays_within_its_token_budget(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Every connected agent pays for tools/list; keep the default a few thousand tokens. A new
    person's default is tenancy + registry (the always-available toolsets): the registry's six
    tools let an agent find and install the rest."""
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token)) as c:
        tools = (await c.list_tools()).tools
    assert {t.name.split("_")[0] for t in tools} >= {"registry", "whoami", "clients"}
    assert not any(t.name.startswith(("bookings_", "messaging_", "analytics_", "jobs_")) for t in tools)
    size = len(
        json.dumps(
            [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools],
            separators=(",", ":"),
        )
    )
    assert size < 28_000, f"default tools/list is {size} bytes (~{size // 4} tokens)"


async def test_one_http_connection_narrows_its_tools_by_header_or_query(
    app: Any, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    await install(client, a, "bookings", "messaging")

    async def connect(url: str, headers: dict[str, str]) -> tuple[set[str], Any]:
        """What the connection lists, and what calling a messaging write there gives."""
        http = mcp_http(app, a.token)
        http.headers.update(headers)
        async with Client(streamable_http_client(url, http_client=http)) as c:
            listed = {t.name for t in (await c.list_tools()).tools}
            try:
                outcome: Any = await c.call_tool(
                    "messaging_thread_mark_read", {"thread_id": str(uuid.uuid4())}
                )
            except MCPError as err:
                outcome = err
            return listed, outcome

    listed, outcome = await connect("http://testserver/mcp", {})
    assert {"messaging_send", "bookings_hold", "registry_install"} <= listed
    assert tool_error(outcome)["code"] == "thread_not_found"  # the tool ran
    for url, headers in (
        ("http://testserver/mcp", {"X-MCP-Toolsets": "bookings", "X-MCP-Readonly": "true"}),
        ("http://testserver/mcp?toolsets=bookings&read_only=true", {}),
    ):
        listed, outcome = await connect(url, headers)
        assert {"bookings_list", "bookings_slots", "whoami"} <= listed
        assert "bookings_hold" not in listed  # a write, on a read-only connection
        assert not any(n.startswith(("messaging_", "clients_", "registry_")) for n in listed), listed
        # A tool outside the connection's selection is as unknown as one that does not exist.
        assert isinstance(outcome, MCPError) and outcome.code == INVALID_PARAMS

    async with mcp_http(app, a.token) as raw:
        r = await raw.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", "X-MCP-Toolsets": "bookings,nope"},
        )
        assert r.status_code == 400 and r.json()["code"] == "unknown_toolsets"
        assert "bookings" in r.json()["hint"]
        # The platform's toolset exists, but this server does not serve it: no connection can ask.
        r = await raw.post(
            "/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream", "X-MCP-Toolsets": "admin"},
        )
        assert r.status_code == 400 and r.json()["code"] == "unknown_toolsets"
        assert "admin" not in r.json()["hint"] and "bookings" in r.json()["hint"]


async def test_stdio_names_no_website_it_cannot_know(db: Database, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    assert db.settings.public_url is None
    async with Client(build_server(db, static_token=a.token)) as c:
        # Not http://127.0.0.1:3040: nothing says the web door runs there.
        assert c.server_info is not None and c.server_info.website_url is None
