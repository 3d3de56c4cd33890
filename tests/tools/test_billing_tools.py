"""The jobs, credits and identity toolsets over MCP: costs stated, annotations honest, the same
rules as REST (holds, 402, idempotency), errors with code and hint."""

from __future__ import annotations

import json
from typing import Any

import httpx
from mcp import Client

from core.relay import Relay
from core.uow import Database
from servers.mcp import build_server
from tests.conftest import make_org, signup
from tests.support.billing import grant, make_admin
from tests.support.mcp import tool_annotations, tool_description, tool_error
from tests.support.registry import install

TOOLS = {
    "jobs_actions_list",
    "jobs_quote",
    "jobs_run",
    "jobs_get",
    "jobs_list",
    "jobs_cancel",
    "credits_balance",
    "credits_ledger",
    "identity_resolve_person",
    "identity_resolve_company",
}


def err(result: Any) -> dict[str, Any]:
    return tool_error(result)


async def test_tools_state_their_cost_and_honest_annotations(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    await install(client, a, "jobs", "credits", "identity")
    async with Client(
        build_server(db, static_token=a.token, toolset_names=["jobs", "credits", "identity"])
    ) as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
    assert set(tools) >= TOOLS
    for name in ("jobs_run", "identity_resolve_person", "identity_resolve_company"):
        assert "CREDIT" in tool_description(tools[name]), name  # the cost is stated
        assert tool_annotations(tools[name]).read_only_hint is False
        assert not tool_annotations(
            tools[name]
        ).idempotent_hint  # each call is a new charge (false by default)
    for name in (
        "jobs_quote",
        "jobs_get",
        "jobs_list",
        "credits_balance",
        "credits_ledger",
        "jobs_actions_list",
    ):
        assert tool_annotations(tools[name]).read_only_hint is True, name
    for name in ("jobs_quote", "credits_balance", "credits_ledger", "jobs_actions_list", "jobs_cancel"):
        assert "free" in tool_description(tools[name]).lower(), name
    assert tool_annotations(tools["jobs_cancel"]).destructive_hint is True
    assert tool_annotations(tools["jobs_run"]).open_world_hint is True  # peers are third parties
    # Not listed to a person who has not installed them.
    b = await signup(client)
    async with Client(build_server(db, static_token=b.token)) as c:
        default = {t.name for t in (await c.list_tools()).tools}
    assert not (TOOLS & default)


async def test_actions_list_shows_what_this_context_can_run_as_rest_does(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    await install(client, a, "jobs")
    async with Client(build_server(db, static_token=a.token, toolset_names=["jobs"])) as c:
        before = (await c.call_tool("jobs_actions_list", {"limit": 100})).structured_content
        await install(client, a, "identity")
        after = (await c.call_tool("jobs_actions_list", {"limit": 100})).structured_content
        described = next(t for t in (await c.list_tools()).tools if t.name == "jobs_actions_list")
    assert "identity" not in {x["component"] for x in before["items"]}
    assert ("identity", "resolve-person") in {(x["component"], x["action"]) for x in after["items"]}
    assert "registry_install" in tool_description(described)
    rest = await client.get("/v1/actions", params={"limit": 100}, headers=a.h())
    assert rest.json() == after


async def test_run_follow_and_pay_through_tools(client: httpx.AsyncClient, db: Database) -> None:
    admin, a = await make_admin(client), await signup(client)
    org = await make_org(client, a)
    await grant(client, admin, 3, org=org)
    await install(client, a)
    await install(client, a, org=org)
    async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as c:
        quote = await c.call_tool(
            "jobs_quote",
            {
                "component": "identity",
                "action": "resolve-person",
                "input_json": '{"email": "a@example.com"}',
                "org": org,
            },
        )
        assert quote.structured_content["credits"] == 1 and quote.structured_content["available"] == 3
        args = {
            "component": "identity",
            "action": "resolve-person",
            "input_json": '{"email": "a@example.com"}',
            "org": org,
            "idempotency_key": "tool-run-1",
        }
        run = await c.call_tool("jobs_run", args)
        assert not run.is_error, run
        again = await c.call_tool("jobs_run", args)
        assert again.structured_content == run.structured_content
        job_id = run.structured_content["job_id"]
        await Relay(db).drain()
        got = await c.call_tool("jobs_get", {"job_id": job_id, "org": org})
        assert (
            got.structured_content["status"] == "succeeded"
            and got.structured_content["credits_captured"] == 1
        )
        listed = await c.call_tool("jobs_list", {"org": org, "status": "succeeded"})
        assert [j["id"] for j in listed.structured_content["items"]] == [job_id]
        assert (await c.call_tool("jobs_list", {})).structured_content["items"] == []  # personal: none

        now = await c.call_tool("identity_resolve_person", {"email": "B@example.com", "org": org})
        assert now.structured_content["normalized"] == {"email": "b@example.com"}
        company = await c.call_tool("identity_resolve_company", {"name": "Cocotte S.A.S.", "org": org})
        assert company.structured_content["normalized"] == {"name": "cocotte"}

        balance = await c.call_tool("credits_balance", {"org": org})
        assert balance.structured_content["open_holds"] == []
        assert (balance.structured_content["balance"], balance.structured_content["available"]) == (0, 0)
        broke = err(await c.call_tool("identity_resolve_person", {"email": "c@example.com", "org": org}))
        assert broke["code"] == "insufficient_credits" and broke["hint"] and broke["available"] == 0
        bad_phone = err(await c.call_tool("identity_resolve_person", {"phone": "12", "org": org}))
        assert bad_phone["code"] == "validation_failed" and bad_phone["fields"][0]["path"] == "phone"
        ledger = await c.call_tool("credits_ledger", {"org": org, "kind": "capture"})
        assert len(ledger.structured_content["items"]) == 3

        bad_json = err(
            await c.call_tool(
                "jobs_run", {"component": "identity", "action": "resolve-person", "input_json": "{"}
            )
        )
        assert bad_json["code"] == "invalid_json"
        not_object = err(
            await c.call_tool(
                "jobs_quote", {"component": "identity", "action": "resolve-person", "input_json": "[]"}
            )
        )
        assert not_object["code"] == "invalid_json"
        bad_input = err(
            await c.call_tool(
                "jobs_quote",
                {"component": "identity", "action": "resolve-person", "input_json": '{"email": 1}'},
            )
        )
        assert bad_input["code"] == "validation_failed" and bad_input["fields"][0]["path"] == "input.email"
        unknown = err(await c.call_tool("jobs_run", {"component": "nope", "action": "nothing"}))
        assert unknown["code"] == "unknown_action"
        actions = await c.call_tool("jobs_actions_list", {"limit": 100})
        names = {(x["component"], x["action"]) for x in actions.structured_content["items"]}
        assert {("identity", "resolve-person"), ("identity", "dedupe-clients")} <= names
        text = json.dumps(actions.structured_content)
        assert "input_schema" in text


async def test_cancel_through_tools(client: httpx.AsyncClient, db: Database) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 2, person=a.slug)
    # identity runs through `jobs_run`: its tools need not be listed, but it must be installed.
    await install(client, a, "jobs", "credits", "identity")
    async with Client(build_server(db, static_token=a.token, toolset_names=["jobs", "credits"])) as c:
        run = await c.call_tool(
            "jobs_run",
            {"component": "identity", "action": "resolve-company", "input_json": '{"domain": "acme.com"}'},
        )
        job_id = run.structured_content["job_id"]
        held = await c.call_tool("credits_balance", {})
        assert held.structured_content["open_holds"][0]["job_id"] == job_id
        cancelled = await c.call_tool("jobs_cancel", {"job_id": job_id})
        assert cancelled.structured_content["status"] == "cancelled"
        assert (await c.call_tool("credits_balance", {})).structured_content["available"] == 2
        await Relay(db).drain()  # the queued event finds the job cancelled: nothing runs
        assert (await c.call_tool("jobs_get", {"job_id": job_id})).structured_content["status"] == "cancelled"
