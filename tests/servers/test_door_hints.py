"""Each door speaks its own language in hints: core names an operation, MCP renders a tool,
REST a route, the `atlilith` client a command."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
from mcp import Client

from core.doors import DOOR_HEADER, REFERENCE
from core.uow import Database
from servers.hints import cli_names, mcp_names, rest_names
from servers.mcp import build_server, toolsets
from tests.conftest import signup
from tests.support.mcp import tool_error
from tests.support.registry import install
from tests.support.source import parse
from tools.base import ToolRuntime

CORE = Path(__file__).resolve().parents[2] / "core"


def _core_references() -> set[str]:
    found: set[str] = set()
    for path in CORE.rglob("*.py"):
        if path.name != "doors.py":
            found |= set(REFERENCE.findall(path.read_text()))
    return found


def test_every_operation_a_hint_names_has_a_name_in_every_door(db: Database) -> None:
    refs = _core_references()
    assert len(refs) > 20
    tools = mcp_names(t for ts in toolsets(ToolRuntime(db, "x")) for t in ts.tools)
    for door, names in {"rest": rest_names(), "mcp": tools, "cli": cli_names()}.items():
        missing = sorted(refs - set(names))
        assert not missing, f"{door} has no name for {missing}"


def test_core_hints_name_no_route_and_no_tool_themselves() -> None:
    tool_names = {t.name for ts in toolsets(ToolRuntime(None, "x")) for t in ts.tools}  # type: ignore[arg-type]
    for path in CORE.rglob("*.py"):
        for hint in re.findall(r'hint=f?"((?:[^"\\]|\\.)*)"', path.read_text()):
            assert "/v1/" not in hint, (path.name, hint)
            # Where field issues are listed is a door's word: REST's `errors`, MCP's `fields`.
            assert "`errors`" not in hint and "`fields`" not in hint, (path.name, hint)
            assert not {w for w in re.findall(r"[a-z_]+", hint) if w in tool_names}, (path.name, hint)


async def test_the_same_refusal_reads_in_each_doors_words(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    missing_job = f"/v1/jobs/{uuid.uuid4()}"

    rest = (await client.get(missing_job, headers=a.h())).json()
    assert rest["code"] == "job_not_found" and "`GET /v1/jobs`" in rest["hint"]
    cli = (await client.get(missing_job, headers={**a.h(), DOOR_HEADER: "cli"})).json()
    assert "`atlilith jobs list`" in cli["hint"] and "/v1/" not in cli["hint"]

    await install(client, a, "jobs")
    async with Client(build_server(db, static_token=a.token)) as c:
        mcp = tool_error(await c.call_tool("jobs_get", {"job_id": str(uuid.uuid4())}))
        assert mcp["code"] == "job_not_found" and "`jobs_list`" in mcp["hint"] and "/v1/" not in mcp["hint"]
        # Not installed: the agent is told the tool that installs, the CLI user the command.
        gated = tool_error(await c.call_tool("bookings_list", {}))
        assert gated["code"] == "component_not_installed" and "`registry_install`" in gated["hint"]
        assert "[[" not in json.dumps(gated)

    run = await client.post(
        "/v1/run/identity/resolve-person", json={"input": {"email": "x@example.com"}}, headers=a.h()
    )
    assert run.status_code == 403 and "`POST /v1/installations`" in run.json()["hint"]
    run_cli = await client.post(
        "/v1/run/identity/resolve-person",
        json={"input": {"email": "x@example.com"}},
        headers={**a.h(), DOOR_HEADER: "cli"},
    )
    assert "`atlilith add <component> [--org ORG]`" in run_cli.json()["hint"]


def test_every_refusal_of_billing_admin_identity_and_tenancy_says_what_to_do() -> None:
    """A caller refused is told what to do next: every domain error core raises (or registers for
    a constraint) carries a hint."""
    import ast

    kinds = {"ValidationFailed", "Unauthenticated", "PermissionDenied", "NotFound", "Conflict", "Gone"}
    for path in CORE.rglob("*.py"):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in kinds:
                assert any(k.arg == "hint" for k in node.keywords), f"{path.relative_to(CORE)}:{node.lineno}"


def test_every_not_found_says_where_to_look() -> None:
    """A caller told "not found" is told how to find what exists (mostly: which operation lists
    it, rendered per door)."""
    import ast

    for path in CORE.rglob("*.py"):
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "NotFound":
                hints = [k.value for k in node.keywords if k.arg == "hint"]
                assert hints, f"{path.relative_to(CORE)}:{node.lineno} NotFound without a hint"
