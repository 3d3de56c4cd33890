"""Installations per context over REST, events, and the MCP gate: a tool of a component the
context has not installed answers `component_not_installed`, at once after an uninstall."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from mcp import Client
from sqlalchemy import select, text

from core.outbox import outbox_table
from core.uow import Database
from servers.mcp import build_server
from tests.conftest import SEED_PASSWORD, join_org, make_org, signup
from tests.support.billing import assert_consistent, grant, ledger_state, make_admin, register_peer
from tests.support.mcp import tool_error
from tests.support.registry import install, uninstall


async def test_install_list_update_uninstall(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    h = a.h()
    r = await client.post(
        "/v1/installations", json={"component": "bookings", "config": {"tz": "Europe/Paris"}}, headers=h
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["component"] == "bookings" and body["config"] == {"tz": "Europe/Paris"}
    assert set(body) == {"component", "name", "version", "tools_hash", "config", "installed_at", "updated_at"}
    again = await client.post(
        "/v1/installations", json={"component": "bookings", "config": {"x": 1}}, headers=h
    )
    assert again.status_code == 200 and again.json()["config"] == {"tz": "Europe/Paris"}
    listed = (await client.get("/v1/installations", headers=h)).json()
    assert [i["component"] for i in listed["items"]] == ["bookings"]
    detail = (await client.get("/v1/registry/bookings", headers=h)).json()
    assert detail["installed"] is True
    patched = await client.patch("/v1/installations/bookings", json={"config": {"tz": "UTC"}}, headers=h)
    assert patched.status_code == 200 and patched.json()["config"] == {"tz": "UTC"}
    assert (await client.delete("/v1/installations/bookings", headers=h)).status_code == 204
    gone = await client.delete("/v1/installations/bookings", headers=h)
    assert gone.status_code == 404 and gone.json()["code"] == "not_installed"
    missing = await client.patch("/v1/installations/bookings", json={"config": {}}, headers=h)
    assert missing.status_code == 404 and missing.json()["code"] == "not_installed"
    unknown = await client.post("/v1/installations", json={"component": "nope-nope"}, headers=h)
    assert unknown.status_code == 404 and unknown.json()["code"] == "component_not_found"
    async with db.system() as uow:
        names = list(
            (
                await uow.session.execute(
                    select(outbox_table.c.name)
                    .where(outbox_table.c.person_id == __import__("uuid").UUID(a.id))
                    .where(outbox_table.c.name.like("registry/installation.%"))
                    .order_by(outbox_table.c.created_at)
                )
            ).scalars()
        )
    assert names == [
        "registry/installation.created",
        "registry/installation.updated",
        "registry/installation.deleted",
    ]


async def test_always_available_and_bad_input_are_clear_errors(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    for slug in ("tenancy", "registry"):
        r = await client.post("/v1/installations", json={"component": slug}, headers=a.h())
        assert r.status_code == 409 and r.json()["code"] == "component_always_available", r.text
        d = await client.delete(f"/v1/installations/{slug}", headers=a.h())
        assert d.status_code == 409 and d.json()["code"] == "component_always_available"
    big = {"blob": "x" * 20_000}
    r = await client.post("/v1/installations", json={"component": "bookings", "config": big}, headers=a.h())
    assert r.status_code == 422, r.text
    r = await client.post("/v1/installations", json={"component": "bookings", "extra": 1}, headers=a.h())
    assert r.status_code == 422


async def test_installations_belong_to_one_context(client: httpx.AsyncClient) -> None:
    owner, member = await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, member)
    await install(client, owner, "messaging", org=org)
    assert (await client.get("/v1/installations", headers=owner.h())).json()["items"] == []
    org_items = (await client.get("/v1/installations", headers=member.h(org=org))).json()["items"]
    assert [i["component"] for i in org_items] == ["messaging"]
    # A member reads the org's installations but cannot change them.
    refused = await client.post(
        "/v1/installations", json={"component": "bookings"}, headers=member.h(org=org)
    )
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_role"
    refused = await client.delete("/v1/installations/messaging", headers=member.h(org=org))
    assert refused.status_code == 403
    outsider = await signup(client)
    r = await client.get("/v1/installations", headers=outsider.h(org=org))
    assert r.status_code == 403


async def test_install_with_idempotency_key_and_in_parallel(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    h = {**a.h(), "Idempotency-Key": "install-jobs-1"}
    first = await client.post("/v1/installations", json={"component": "jobs"}, headers=h)
    retry = await client.post("/v1/installations", json={"component": "jobs"}, headers=h)
    assert first.status_code == retry.status_code == 201 and first.json() == retry.json()
    results = await asyncio.gather(
        *(client.post("/v1/installations", json={"component": "credits"}, headers=a.h()) for _ in range(5))
    )
    assert sorted(r.status_code for r in results) == [200, 200, 200, 200, 201]
    assert len((await client.get("/v1/installations", headers=a.h())).json()["items"]) == 2


def _err(result: Any) -> dict[str, Any]:
    return tool_error(result)


async def test_mcp_gate_follows_installs_at_once_in_the_acting_context(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as c:
        names = {t.name for t in (await c.list_tools()).tools}
        assert "whoami" in names and "registry_search" in names
        assert not any(n.startswith(("bookings_", "messaging_", "jobs_")) for n in names)

        refused = await c.call_tool("bookings_services_list", {})
        err = _err(refused)
        assert err["code"] == "component_not_installed" and err["component"] == "bookings"
        # The hint names this door's way to install (the tool, not the CLI) and the context.
        assert "`registry_install`" in err["hint"] and "atlilith" not in err["hint"]
        assert "'bookings'" in err["hint"] and "personal context" in err["hint"]

        made = await c.call_tool("registry_install", {"component": "bookings"})
        assert not made.is_error and made.structured_content["created"] is True
        assert not (await c.call_tool("bookings_services_list", {})).is_error
        assert "bookings_services_list" in {t.name for t in (await c.list_tools()).tools}

        # Installed personally, not in the org: a call acting in the org is refused.
        in_org = _err(await c.call_tool("bookings_services_list", {"org": org}))
        assert in_org["code"] == "component_not_installed" and f"in org {org!r}" in in_org["hint"]
        await install(client, a, "bookings", org=org)
        assert not (await c.call_tool("bookings_services_list", {"org": org})).is_error

        # Uninstalled over REST while this connection lives: refused on the very next call.
        await uninstall(client, a, "bookings")
        assert _err(await c.call_tool("bookings_services_list", {}))["code"] == "component_not_installed"
        assert not (await c.call_tool("bookings_services_list", {"org": org})).is_error

        # Tenancy and registry tools never need an install.
        assert not (await c.call_tool("whoami", {})).is_error
        assert not (await c.call_tool("registry_installations", {})).is_error
        ok = await c.call_tool(
            "registry_configure", {"component": "bookings", "org": org, "config": '{"a": 1}'}
        )
        assert not ok.is_error and ok.structured_content["config"] == {"a": 1}
        bad = _err(
            await c.call_tool("registry_configure", {"component": "bookings", "org": org, "config": "[1]"})
        )
        assert bad["code"] == "invalid_config"
        gone = await c.call_tool("registry_uninstall", {"component": "bookings", "org": org})
        assert not gone.is_error
        # Installed nowhere the person acts any more: gone from the list too.
        assert "bookings_services_list" not in {t.name for t in (await c.list_tools()).tools}
        assert (
            _err(await c.call_tool("bookings_services_list", {"org": org}))["code"]
            == "component_not_installed"
        )


async def test_tools_list_follows_the_credentials_contexts(client: httpx.AsyncClient, db: Database) -> None:
    """An org-bound API key lists the org's installed toolsets; a person's token those of every
    context they can act in, and no one else's."""
    a = await signup(client)
    org = await make_org(client, a)
    await install(client, a, "messaging", org=org)
    await install(client, a, "analytics")
    key = await client.post(
        "/v1/api-keys", json={"name": "agent", "org": org, "scopes": ["*"]}, headers=a.h()
    )
    assert key.status_code == 201, key.text
    async with Client(build_server(db, static_token=key.json()["token"])) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert any(n.startswith("messaging_") for n in names) and not any(
        n.startswith("analytics_") for n in names
    )
    async with Client(build_server(db, static_token=a.token)) as c:
        names = {t.name for t in (await c.list_tools()).tools}
    assert any(n.startswith("analytics_") for n in names) and any(n.startswith("messaging_") for n in names)
    assert not any(n.startswith("bookings_") for n in names)
    # Another person's installs never widen my list; joining an org does, leaving it undoes it.
    b = await signup(client)
    await install(client, b, "bookings")
    async with Client(build_server(db, static_token=b.token)) as c:
        assert not any(t.name.startswith(("messaging_", "analytics_")) for t in (await c.list_tools()).tools)
        await join_org(client, org, a, b)
        assert any(t.name.startswith("messaging_") for t in (await c.list_tools()).tools)
        r = await client.delete(f"/v1/orgs/{org}/members/{b.slug}", headers=a.h())
        assert r.status_code == 204, r.text
        assert not any(t.name.startswith("messaging_") for t in (await c.list_tools()).tools)


async def test_seed_installs_every_builtin_for_the_bootstrap_tenant(db: Database) -> None:
    from sqlalchemy import text

    from core.seed import ORG_SLUG, PERSON_SLUG, seed
    from core.tenancy.models import Org, Person

    await seed(db, SEED_PASSWORD)
    again = await seed(db, SEED_PASSWORD)
    assert again.components_installed == 0  # idempotent
    async with db.system() as uow:
        person = (await uow.session.execute(select(Person.id).where(Person.slug == PERSON_SLUG))).scalar_one()
        org = (await uow.session.execute(select(Org.id).where(Org.slug == ORG_SLUG))).scalar_one()
        installable = (
            await uow.session.execute(
                text(
                    "SELECT count(*) FROM registry.components WHERE kind = 'builtin'"
                    " AND availability = 'install' AND retired_at IS NULL"
                )
            )
        ).scalar_one()
        for tenant in (person, org):
            count = (
                await uow.session.execute(
                    text("SELECT count(*) FROM registry.installations WHERE tenant_id = :t"), {"t": tenant}
                )
            ).scalar_one()
            assert count == installable >= 6


# --- actions are gated like tools: every door, the acting context, nothing held when refused -----


async def _jobs_of(db: Database, tenant_id: str) -> int:
    async with db.system() as uow:
        return int(
            (
                await uow.session.execute(
                    text("SELECT count(*) FROM billing.jobs WHERE tenant_id = :t"),
                    {"t": uuid.UUID(tenant_id)},
                )
            ).scalar_one()
        )


def _refused(r: httpx.Response, component: str) -> dict[str, Any]:
    assert r.status_code == 403, r.text
    body = dict(r.json())
    assert body["code"] == "component_not_installed" and body["component"] == component, body
    assert f"{component!r}" in body["hint"] and "POST /v1/installations" in body["hint"], body
    return body


async def test_an_action_runs_only_where_its_component_is_installed(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin, a = await make_admin(client), await signup(client)
    org = await make_org(client, a)
    org_id = (await client.get(f"/v1/orgs/{org}", headers=a.h())).json()["id"]
    await grant(client, admin, 5, person=a.slug)
    await grant(client, admin, 5, org=org)
    person = {"input": {"email": "ada@example.com"}}

    # Nowhere installed: every door refuses, before anything is priced, held or recorded.
    body = _refused(
        await client.post("/v1/run/identity/resolve-person", json=person, headers=a.h()), "identity"
    )
    assert "personal context" in body["hint"]
    _refused(await client.post("/v1/quote/identity/resolve-person", json=person, headers=a.h()), "identity")
    sync = await client.post("/v1/identity/resolve-person", json={"email": "ada@example.com"}, headers=a.h())
    _refused(sync, "identity")
    for tenant, h in ((a.id, a.h()), (org_id, a.h(org=org))):
        balance = (await client.get("/v1/credits", headers=h)).json()
        assert (balance["balance"], balance["held"], balance["available"]) == (5, 0, 5)
        state = await ledger_state(db, tenant)
        assert_consistent(state)
        assert state["entries"] == 1  # the grant alone
        assert await _jobs_of(db, tenant) == 0
        assert (await client.get("/v1/jobs", headers=h)).json()["items"] == []

    # Installed in the personal context: runs there, and only there.
    await install(client, a, "identity")
    assert (
        await client.post("/v1/run/identity/resolve-person", json=person, headers=a.h())
    ).status_code == 202
    in_org = _refused(
        await client.post("/v1/run/identity/resolve-person", json=person, headers=a.h(org=org)), "identity"
    )
    assert f"in org {org!r}" in in_org["hint"]
    org_balance = (await client.get("/v1/credits", headers=a.h(org=org))).json()
    assert (org_balance["balance"], org_balance["held"]) == (5, 0) and await _jobs_of(db, org_id) == 0

    await install(client, a, "identity", org=org)
    assert (
        await client.post("/v1/run/identity/resolve-person", json=person, headers=a.h(org=org))
    ).status_code == 202

    # Uninstalled: refused on the very next call; the job already accepted keeps its hold.
    await uninstall(client, a, "identity")
    _refused(await client.post("/v1/run/identity/resolve-person", json=person, headers=a.h()), "identity")
    assert (await client.get("/v1/credits", headers=a.h())).json()["held"] == 1
    assert await _jobs_of(db, a.id) == 1
    assert_consistent(await ledger_state(db, a.id))


async def test_a_peer_action_needs_the_peer_installed_over_rest_and_mcp(
    client: httpx.AsyncClient, db: Database
) -> None:
    admin, a = await make_admin(client), await signup(client)
    org = await make_org(client, a)
    org_id = (await client.get(f"/v1/orgs/{org}", headers=a.h())).json()["id"]
    await grant(client, admin, 20, person=a.slug)
    await grant(client, admin, 20, org=org)
    # Never called: nothing here reaches the relay.
    slug = (
        await register_peer(
            client, admin, "http://127.0.0.1:9", actions=[{"name": "draft-reply", "price": 5}]
        )
    )["slug"]
    # The registry knows the peer as a component one installs.
    assert (await client.get(f"/v1/registry/{slug}", headers=a.h())).json()["installed"] is False

    _refused(await client.post(f"/v1/run/{slug}/draft-reply", json={"input": {}}, headers=a.h()), slug)
    _refused(await client.post(f"/v1/quote/{slug}/draft-reply", json={"input": {}}, headers=a.h()), slug)

    await install(client, a, "jobs")  # the tools' own toolset, so that the refusal is the action's
    await install(client, a, "jobs", org=org)
    run_args = {"component": slug, "action": "draft-reply", "input_json": "{}"}
    async with Client(build_server(db, static_token=a.token, toolset_names=["jobs"])) as c:
        for tool in ("jobs_run", "jobs_quote"):
            err = _err(await c.call_tool(tool, run_args))
            assert err["code"] == "component_not_installed" and err["component"] == slug, err
            assert "`registry_install`" in err["hint"] and f"{slug!r}" in err["hint"], err
        for tenant, h in ((a.id, a.h()), (org_id, a.h(org=org))):
            balance = (await client.get("/v1/credits", headers=h)).json()
            assert (balance["balance"], balance["held"]) == (20, 0)
            assert await _jobs_of(db, tenant) == 0

        await install(client, a, slug)
        ran = await c.call_tool("jobs_run", run_args)
        assert not ran.is_error, ran
        assert ran.structured_content["credits_held"] == 5
        rest = await client.post(f"/v1/run/{slug}/draft-reply", json={"input": {}}, headers=a.h())
        assert rest.status_code == 202, rest.text
        # Installed personally, not in the org the call acts in.
        in_org = _err(await c.call_tool("jobs_run", {**run_args, "org": org}))
        assert in_org["code"] == "component_not_installed" and in_org["component"] == slug
        assert f"in org {org!r}" in in_org["hint"]
        assert await _jobs_of(db, org_id) == 0

        # Uninstalled while the connection lives: the next call is refused.
        await uninstall(client, a, slug)
        again = _err(await c.call_tool("jobs_run", run_args))
        assert again["code"] == "component_not_installed" and again["component"] == slug
    assert (await client.get("/v1/credits", headers=a.h())).json()["held"] == 10
    assert await _jobs_of(db, a.id) == 2
    assert_consistent(await ledger_state(db, a.id))


async def _pages(client: httpx.AsyncClient, path: str, h: dict[str, str], key: str) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(50):  # a cursor that never advances fails instead of looping
        params = {"limit": "1"} | ({"cursor": cursor} if cursor else {})
        page = (await client.get(path, params=params, headers=h)).json()
        seen += [i[key] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"{path} pages never end: {seen[:10]}")


async def test_installations_and_the_catalogue_page_by_slug(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    h = a.h()
    # Other tests register components in the same database: compare whole walks, and the first
    # page (default size) as their prefix.
    catalogue = await _pages(client, "/v1/registry", h, "slug")
    assert len(catalogue) >= 2 and catalogue == sorted(catalogue)
    first = [i["slug"] for i in (await client.get("/v1/registry", headers=h)).json()["items"]]
    assert first == catalogue[: len(first)]
    for slug in catalogue:
        await client.post("/v1/installations", json={"component": slug}, headers=h)
    installed = await _pages(client, "/v1/installations", h, "component")
    assert len(installed) >= 2 and installed == sorted(installed)
    first = [i["component"] for i in (await client.get("/v1/installations", headers=h)).json()["items"]]
    assert first == installed[: len(first)]


async def test_a_config_that_is_no_plain_json_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Nested past what a settings document needs (serializing it failed after the write:
    stored, then every read of the installations a 500) or holding NaN (refused by PostgreSQL
    as a 500): refused up front, the stored config untouched, on both doors."""
    a = await signup(client)
    await install(client, a, "bookings")
    assert (
        await client.patch("/v1/installations/bookings", json={"config": {"tz": "UTC"}}, headers=a.h())
    ).is_success
    deep = '{"a":' * 300 + "1" + "}" * 300
    for body in ('{"config": ' + deep + "}", '{"config": {"a": NaN}}', '{"config": {"a": 1e999}}'):
        r = await client.patch(
            "/v1/installations/bookings", content=body, headers=a.h() | {"content-type": "application/json"}
        )
        assert r.status_code == 422, (body[:40], r.status_code, r.text[:200])
        assert r.json()["code"] == "validation_failed" and r.json()["errors"][0]["field"].startswith("config")
    async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as c:
        for config in (deep, '{"a": NaN}', '{"a": Infinity}'):
            refused = tool_error(
                await c.call_tool("registry_configure", {"component": "bookings", "config": config})
            )
            assert refused["code"] == "invalid_arguments" and refused["fields"][0]["path"] == "config", (
                refused
            )
        # Tenancy is always there: configuring it says so, never "install it first".
        always = tool_error(await c.call_tool("registry_configure", {"component": "tenancy", "config": "{}"}))
        assert always["code"] == "component_always_available"
    listed = await client.get("/v1/installations", headers=a.h())
    assert listed.status_code == 200 and listed.json()["items"][0]["config"] == {"tz": "UTC"}
    patched = await client.patch("/v1/installations/tenancy", json={"config": {}}, headers=a.h())
    assert patched.status_code == 409 and patched.json()["code"] == "component_always_available"
