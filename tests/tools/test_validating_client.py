"""What a validating MCP client sees of every tool. The official TypeScript SDK (what hosts
embed) checks a result's `structuredContent` against the tool's `outputSchema` — error results
included — and throws -32602 on a mismatch, so the model never sees the error. Here every tool
is called once so that it succeeds (its structured content must validate against its output
schema, JSON Schema 2020-12) and once so that it fails (no structured content; one text block
holding one JSON error object), first in-process, then through the TypeScript SDK against a live
server over streamable HTTP and over stdio."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import Tool

from core.config import Settings
from core.uow import Database
from servers.app import create_app
from servers.mcp import build_server
from tests.conftest import ROOT, Account
from tests.support.billing import make_admin
from tests.support.every_tool import BAD, OK, World, build, error_object, plan_bad, plan_ok
from tests.support.messaging import FakePeer, messaging_database
from tests.support.serving import app_client, free_port, serving

TS_CLIENT = Path(__file__).resolve().parent / "ts_client"
# Outside the source tree's tracked files (.atlilith/ is ignored), kept between runs: npm install
# runs once per SDK version, later runs take the installed copy.
TS_SDK_DIR = ROOT / ".atlilith" / "ts-client"


def as_json(result: Any) -> dict[str, Any]:
    return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))


def schema_problems(tool: Tool, structured: Any) -> list[str]:
    validator = Draft202012Validator(tool.output_schema or {})
    return [f"{tool.name}: {e.json_path}: {e.message}" for e in validator.iter_errors(structured)]


@asynccontextmanager
async def every_tool_world(
    db: Database, owner_ready: Callable[[Account], Awaitable[None]] | None = None
) -> AsyncIterator[World]:
    """The world of tests/support/every_tool.py, served with every toolset and a drafting peer;
    preparations go through an in-process MCP client of the owner."""
    async with (
        FakePeer() as peer,
        messaging_database(db, messaging_draft_peer_url=peer.url("/draft"), toolsets=["all"]) as mdb,
        app_client(mdb) as rest,
    ):
        owner = await make_admin(rest)
        if owner_ready is not None:
            await owner_ready(owner)
        async with Client(build_server(mdb, static_token=owner.token)) as c:
            yield await build(rest, c, mdb, owner)


async def test_every_tool_succeeds_within_its_output_schema_and_fails_as_an_error_object(
    db: Database,
) -> None:
    async with every_tool_world(db) as w:
        c = w.mcp
        tools = {t.name: t for t in (await c.list_tools()).tools}
        # A tool without a case fails the test: every tool is held to this.
        assert set(tools) == set(OK) == set(BAD), (
            sorted(set(tools) ^ set(OK)),
            sorted(set(tools) ^ set(BAD)),
        )
        for tool in tools.values():
            Draft202012Validator.check_schema(tool.output_schema or {})
        problems: list[str] = []
        for name, args in await plan_ok(w):
            result = await c.call_tool(name, args)
            if result.is_error or result.structured_content is None:
                problems.append(f"{name} failed: {result.content}")
            else:
                problems += schema_problems(tools[name], result.structured_content)
        for name, args, code in plan_bad(w):
            answer = as_json(await c.call_tool(name, args))
            try:
                got = error_object(answer)
                assert got["code"] == code
                if code == "invalid_arguments":
                    assert got.get("fields") and got.get("hint")
                    assert "pydantic" not in json.dumps(got)
            except (AssertionError, ValueError):
                problems.append(f"{name}: expected a {code} error object, got {answer}")
        assert not problems, "\n".join(problems)

        with pytest.raises(MCPError) as unknown:
            await c.call_tool("no_such_tool", {})
        assert unknown.value.code == -32602


# --- the official TypeScript SDK ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ts_sdk() -> Path:
    """The TypeScript SDK installed with npm (pinned in ts_client/package.json). Node is on every
    development and CI machine: without it this fails, it does not skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are needed to run the official TypeScript MCP SDK (install Node 20+)"
    TS_SDK_DIR.mkdir(parents=True, exist_ok=True)
    wanted = (TS_CLIENT / "package.json").read_text()
    with (TS_SDK_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel runs share one install
        installed = TS_SDK_DIR / "node_modules" / "@modelcontextprotocol" / "sdk" / "package.json"
        manifest = TS_SDK_DIR / "package.json"
        if not (installed.exists() and manifest.exists() and manifest.read_text() == wanted):
            manifest.write_text(wanted)
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--no-package-lock"],
                cwd=TS_SDK_DIR,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"
    return TS_SDK_DIR


async def start_ts(sdk: Path, connection: dict[str, Any]) -> asyncio.subprocess.Process:
    """The TypeScript client, connecting now; `finish_ts` gives it the calls."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(TS_CLIENT / "client.mjs"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ATLILITH_TS_SDK_DIR": str(sdk)},
    )
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(connection).encode() + b"\n")
    return proc


async def finish_ts(proc: asyncio.subprocess.Process, calls: list[dict[str, Any]], parallel: int) -> Any:
    request = json.dumps({"calls": calls, "parallel": parallel}).encode() + b"\n"
    out, err = await asyncio.wait_for(proc.communicate(request), 120)
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out)


def stdio_server(token: str, settings: Settings) -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-m", "servers.cli", "mcp", "--toolsets", "all"],
        "cwd": str(ROOT),
        "env": {
            "ATLILITH_TOKEN": token,
            "DATABASE_URL": settings.database_url or "",
            "ATLILITH_JWT_SECRET": settings.jwt_secret or "",
            "ATLILITH_DATA_DIR": str(settings.data_dir),
            "ATLILITH_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
        },
    }


@asynccontextmanager
async def live_http(db: Database) -> AsyncIterator[str]:
    """The app on a real port of 127.0.0.1 (uvicorn in this event loop): the TypeScript client is
    another process and speaks real HTTP to it."""
    port = free_port()
    app = create_app(db.settings.model_copy(update={"port": port}), db=db, run_relay=False)
    async with serving(app, port, lifespan="on"):
        yield f"http://127.0.0.1:{port}/mcp"


def check_ts(
    ok: list[tuple[str, dict[str, Any]]], bad: list[tuple[str, dict[str, Any], str]], results: list[Any]
) -> list[str]:
    """What the TypeScript SDK handed back: every success accepted (its own validator checked
    it against the outputSchema), every error returned as a result, none thrown."""
    assert len(results) == len(ok) + len(bad), results
    problems: list[str] = []
    for (name, _), outcome in zip(ok, results, strict=False):
        if "thrown" in outcome:
            problems.append(f"{name}: the SDK threw {outcome['thrown']}")
        elif outcome["result"].get("isError"):
            problems.append(f"{name} failed: {outcome['result']['content']}")
    for (name, _, code), outcome in zip(bad, results[len(ok) :], strict=True):
        if "thrown" in outcome:
            problems.append(f"{name}: the SDK threw {outcome['thrown']} instead of returning the error")
            continue
        try:
            assert error_object(outcome["result"])["code"] == code
        except (AssertionError, ValueError):
            problems.append(f"{name}: expected a {code} error object, got {outcome['result']}")
    return problems


# Over stdio, a few of each kind: the transport differs, the tools do not.
STDIO_OK = {"whoami", "clients_get", "bookings_slots", "messaging_thread_get", "jobs_list"}
STDIO_BAD = {"clients_get", "clients_create", "jobs_get", "org_members_list", "bookings_hold", "whoami"}


async def test_typescript_sdk_reads_every_error_and_accepts_every_result(ts_sdk: Path, db: Database) -> None:
    stdio: list[asyncio.subprocess.Process] = []

    async def boot_stdio(owner: Account) -> None:
        # The stdio server is a new Python process: let it start while the world is built.
        stdio.append(await start_ts(ts_sdk, stdio_server(owner.token, db.settings)))

    try:
        async with every_tool_world(db, boot_stdio) as w, live_http(w.db) as url:
            ok, bad = await plan_ok(w), plan_bad(w)
            stdio_ok = [(n, a) for n, a in ok if n in STDIO_OK]
            stdio_bad = [(n, a, code) for n, a, code in bad if n in STDIO_BAD]
            unknown = [{"name": "no_such_tool", "arguments": {}}]

            def calls(ok: list[tuple[str, Any]], bad: list[tuple[str, Any, str]]) -> list[dict[str, Any]]:
                return [{"name": n, "arguments": a} for n, a in ok] + [
                    {"name": n, "arguments": a} for n, a, _ in bad
                ]

            http = await start_ts(ts_sdk, {"transport": "http", "url": url, "token": w.owner.token})
            over_http, over_stdio = await asyncio.gather(
                finish_ts(http, calls(ok, bad) + unknown, parallel=6),
                finish_ts(stdio[0], calls(stdio_ok, stdio_bad) + unknown, parallel=1),
            )
    finally:
        for proc in stdio:
            if proc.returncode is None:  # the test failed before the calls: end the client
                proc.kill()
                await proc.wait()
    assert set(over_http["tools"]) == set(OK) and set(over_stdio["tools"]) == set(OK)
    problems = check_ts(ok, bad, over_http["results"][:-1])
    problems += [f"stdio: {p}" for p in check_ts(stdio_ok, stdio_bad, over_stdio["results"][:-1])]
    assert not problems, "\n".join(problems)
    for got in (over_http, over_stdio):
        thrown = got["results"][-1].get("thrown")
        assert thrown and thrown["code"] == -32602, got["results"][-1]
