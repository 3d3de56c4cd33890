"""Installations per context over REST, events, and the MCP gate: a tool of a component the
context has not installed answers `component_not_installed`, at once after an uninstall."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from mcp import Client
from sqlalchemy import select

from core.events import outbox_table
from core.uow import Database
from servers.mcp import build_server
from tests.conftest import make_org, signup
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
    r = await client.post(f"/v1/orgs/{org}/members", json={"person": member.slug}, headers=owner.h())
    assert r.status_code == 201, r.text
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
    assert result.is_error, result
    return dict(result.structured_content["error"])


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
        assert "registry_install" in err["hint"] and "atlilith add bookings" in err["hint"]

        made = await c.call_tool("registry_install", {"component": "bookings"})
        assert not made.is_error and made.structured_content["created"] is True
        assert not (await c.call_tool("bookings_services_list", {})).is_error
        assert "bookings_services_list" in {t.name for t in (await c.list_tools()).tools}

        # Installed personally, not in the org: a call acting in the org is refused.
        in_org = _err(await c.call_tool("bookings_services_list", {"org": org}))
        assert in_org["code"] == "component_not_installed" and f"--org {org}" in in_org["hint"]
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
        r = await client.post(f"/v1/orgs/{org}/members", json={"person": b.slug}, headers=a.h())
        assert r.status_code == 201, r.text
        assert any(t.name.startswith("messaging_") for t in (await c.list_tools()).tools)
        r = await client.delete(f"/v1/orgs/{org}/members/{b.slug}", headers=a.h())
        assert r.status_code == 204, r.text
        assert not any(t.name.startswith("messaging_") for t in (await c.list_tools()).tools)


async def test_seed_installs_every_builtin_for_the_bootstrap_tenant(db: Database) -> None:
    from sqlalchemy import text

    from core.seed import ORG_SLUG, PERSON_SLUG, seed
    from core.tenancy.models import Org, Person

    await seed(db, "seed-password-1")
    again = await seed(db, "seed-password-1")
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
