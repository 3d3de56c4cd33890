"""The `admin` toolset: off by default, honest annotations, refused to everyone but platform
admins, the same rules and audit as REST; and the operator's `atlilith admin promote`."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import httpx
from mcp import Client
from sqlalchemy import text

from core.uow import Database
from servers.mcp import build_server
from tests.conftest import ROOT, make_org, signup
from tests.support.billing import make_admin
from tests.support.mcp import tool_annotations, tool_error

ADMIN_TOOLS = {
    "admin_persons",
    "admin_person_get",
    "admin_person_suspend",
    "admin_person_reactivate",
    "admin_orgs",
    "admin_audit",
    "admin_credits_grant",
    "admin_dead_letters",
    "admin_dead_letters_redrive",
}


def err(result: Any) -> dict[str, Any]:
    return tool_error(result)


async def test_admin_toolset_is_off_by_default_and_annotated(client: httpx.AsyncClient, db: Database) -> None:
    a, someone = await make_admin(client), await signup(client)
    async with Client(build_server(db, static_token=a.token)) as c:
        default = {t.name for t in (await c.list_tools()).tools}
    assert not (ADMIN_TOOLS & default)
    # Selected by name, the platform toolset is still listed only to platform admins.
    async with Client(build_server(db, static_token=someone.token, toolset_names=["admin"])) as c:
        assert {t.name for t in (await c.list_tools()).tools} == {"whoami"}
    async with Client(build_server(db, static_token=a.token, toolset_names=["admin"])) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) == ADMIN_TOOLS | {"whoami"}
    for name in ("admin_persons", "admin_person_get", "admin_orgs", "admin_audit", "admin_dead_letters"):
        assert tool_annotations(tools[name]).read_only_hint is True, name
    redrive = tool_annotations(tools["admin_dead_letters_redrive"])
    assert redrive.read_only_hint is False and redrive.idempotent_hint is True
    suspend = tool_annotations(tools["admin_person_suspend"])
    assert (
        suspend.read_only_hint is False
        and suspend.destructive_hint is True
        and suspend.idempotent_hint is True
    )
    assert tool_annotations(tools["admin_person_reactivate"]).destructive_hint is False
    assert not tool_annotations(tools["admin_credits_grant"]).idempotent_hint
    for name in ADMIN_TOOLS:
        assert "org" not in tools[name].input_schema.get("properties", {}), name  # person-level
    async with Client(build_server(db, static_token=a.token, toolset_names=["admin"], read_only=True)) as c:
        read_only = {t.name for t in (await c.list_tools()).tools}
    assert read_only == {
        "admin_persons",
        "admin_person_get",
        "admin_orgs",
        "admin_audit",
        "admin_dead_letters",
        "whoami",
    }


async def test_admin_tools_are_refused_to_a_person_and_an_org_owner(
    client: httpx.AsyncClient, db: Database
) -> None:
    someone, owner = await signup(client), await signup(client, "owner")
    org = await make_org(client, owner)
    key = (
        await client.post("/v1/api-keys", json={"name": "k", "scopes": ["*"], "org": org}, headers=owner.h())
    ).json()["token"]
    calls: dict[str, dict[str, Any]] = {
        "admin_persons": {},
        "admin_person_get": {"person": someone.slug},
        "admin_person_suspend": {"person": someone.slug, "reason": "nope nope"},
        "admin_person_reactivate": {"person": someone.slug},
        "admin_orgs": {},
        "admin_audit": {},
        "admin_credits_grant": {"credits": 100, "to_org": org},
        "admin_dead_letters": {},
        "admin_dead_letters_redrive": {"handler": "tests.poison"},
    }
    for token in (someone.token, owner.token, key):
        async with Client(build_server(db, static_token=token, toolset_names=["admin"])) as c:
            for name, args in calls.items():
                e = err(await c.call_tool(name, args))
                assert e["code"] == "platform_admin_required" and e["hint"], (name, e)
    assert (await client.get("/v1/me", headers=someone.h())).status_code == 200
    assert (await client.get("/v1/credits", headers=owner.h(org=org))).json()["balance"] == 0


async def test_an_admin_works_through_the_tools(client: httpx.AsyncClient, db: Database) -> None:
    admin, a = await make_admin(client), await signup(client)
    org = await make_org(client, a)
    async with Client(build_server(db, static_token=admin.token, toolset_names=["admin"])) as c:
        found = await c.call_tool("admin_persons", {"q": a.slug})
        assert [p["slug"] for p in found.structured_content["items"]] == [a.slug]
        person = (await c.call_tool("admin_person_get", {"person": a.slug})).structured_content
        assert person["status"] == "active" and [m["org_slug"] for m in person["orgs"]] == [org]
        orgs = (await c.call_tool("admin_orgs", {"q": org})).structured_content["items"]
        assert [(o["slug"], o["member_count"]) for o in orgs] == [(org, 1)]

        key = f"grant-{uuid.uuid4().hex}"
        args = {"credits": 7, "to_org": org, "memo": "welcome", "idempotency_key": key}
        first, again = (
            await c.call_tool("admin_credits_grant", args),
            await c.call_tool("admin_credits_grant", args),
        )
        assert not first.is_error and first.structured_content == again.structured_content
        assert (await client.get("/v1/credits", headers=a.h(org=org))).json()["balance"] == 7
        both = err(
            await c.call_tool("admin_credits_grant", {"credits": 1, "to_org": org, "to_person": a.slug})
        )
        assert both["code"] == "invalid_arguments" and both["hint"]

        # The SDK checks the argument schema before the tool runs: the same shape all the same.
        empty = err(await c.call_tool("admin_person_suspend", {"person": a.slug, "reason": ""}))
        assert empty["code"] == "invalid_arguments" and empty["fields"][0]["path"] == "reason"
        done = await c.call_tool("admin_person_suspend", {"person": a.slug, "reason": "tool test"})
        assert done.structured_content["changed"] is True
        assert (await client.get("/v1/me", headers=a.h())).json()["code"] == "account_suspended"
        async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as theirs:
            assert err(await theirs.call_tool("whoami", {}))["code"] == "account_suspended"
        self_ = err(await c.call_tool("admin_person_suspend", {"person": admin.slug, "reason": "oops"}))
        assert self_["code"] == "cannot_suspend_self"
        back = await c.call_tool("admin_person_reactivate", {"person": a.id})
        assert back.structured_content["person"]["status"] == "active"

        log = (await c.call_tool("admin_audit", {"target_id": a.slug})).structured_content["items"]
        assert [e["action"] for e in log] == ["person.reactivate", "person.suspend"]
        grants = (
            await c.call_tool("admin_audit", {"action": "credits.*", "target_id": org})
        ).structured_content
        assert [e["details"]["credits"] for e in grants["items"]] == [7]  # the retry granted nothing
        assert all(e["actor_label"] == admin.slug for e in log + grants["items"])
        assert all(e["credential"].startswith("session:") for e in log)


async def test_operator_promotes_the_first_admin(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    env = {
        "DATABASE_URL": db.settings.database_url or "",
        "ATLILITH_JWT_SECRET": db.settings.jwt_secret or "",
        "ATLILITH_DATA_DIR": str(db.settings.data_dir),
        "ATLILITH_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }

    async def atlilith(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "servers.cli",
            *args,
            cwd=str(ROOT),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, errs = await asyncio.wait_for(proc.communicate(), 60)
        return proc.returncode or 0, out.decode(), errs.decode()

    assert (await client.get("/v1/admin/persons", headers=a.h())).status_code == 403
    code, out, _ = await atlilith("admin", "promote", a.slug)
    assert code == 0 and out.strip() == f"{a.slug} is now a platform admin."
    assert (await client.get("/v1/admin/persons", headers=a.h())).status_code == 200  # same token
    code, out, _ = await atlilith("admin", "promote", a.slug)
    assert code == 0 and "already" in out
    code, _, errs = await atlilith("admin", "promote", "nobody-" + uuid.uuid4().hex[:6])
    assert code == 2 and "person_not_found" in errs
    entries = (
        await client.get("/v1/admin/audit", params={"actor": "operator", "target_id": a.slug}, headers=a.h())
    ).json()["items"]
    assert [(e["action"], e["actor_kind"], e["actor_person_id"]) for e in entries] == [
        ("person.promote", "operator", None)
    ]
    code, out, _ = await atlilith("admin", "demote", a.slug)
    assert code == 0 and "now not a platform admin" in out
    assert (await client.get("/v1/admin/persons", headers=a.h())).status_code == 403
    async with db.system() as uow:
        actions = (
            (
                await uow.session.execute(
                    text("SELECT action FROM platform.audit_log WHERE target_id = :t ORDER BY at"),
                    {"t": a.id},
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["person.promote", "person.demote"]
