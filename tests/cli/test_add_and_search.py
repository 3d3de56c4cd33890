"""`atlilith add` and `atlilith search` against a stub of the registry contract
(/work/briefs/contract.md) on 127.0.0.1, and the skill writer's rules. The same commands
against the real registry: tests/cli/test_registry_live.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from servers import client_cli
from tests.cli.live import Cli, no_traceback, one_json
from tests.support.serving import free_port

SKILL = "---\nname: bookings\ndescription: Book appointments. Use when a client asks for a slot.\n---\n# Bookings\n"


def problem(status: int, code: str, detail: str, hint: str | None = None) -> JSONResponse:
    body = {
        "type": f"https://atlilith.dev/problems/{code}",
        "title": code,
        "status": status,
        "detail": detail,
        "code": code,
        "trace_id": "t" * 32,
    }
    if hint:
        body["hint"] = hint
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


class StubRegistry:
    """Just enough of the registry contract, with installations per X-Atlilith-Org."""

    def __init__(self) -> None:
        self.components: dict[str, dict[str, Any]] = {
            "bookings": {
                "slug": "bookings",
                "name": "Bookings",
                "version": "1.2.0",
                "kind": "builtin",
                "description": "Appointments and availability.\nMore text.",
                "skill": SKILL,
            },
            "echo": {
                "slug": "echo",
                "name": "Echo",
                "version": "0.1.0",
                "kind": "peer",
                "description": "A peer without a skill.",
                "skill": None,
            },
        }
        self.installed: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.skill_override: str | None = None

        async def registry(request: Request) -> Response:
            self._record(request, None)
            q = request.query_params.get("q") or ""
            ctx = request.headers.get("x-atlilith-org", "-")
            items = [
                {
                    **{k: v for k, v in c.items() if k != "skill"},
                    "installed": (ctx, c["slug"]) in self.installed,
                    "toolset": None,
                    "tools_count": 0,
                    "tools_hash": "h",
                    "actions": [],
                    "rank": 0.5 if q else None,
                }
                for c in self.components.values()
                if q.lower() in (c["name"] + c["description"]).lower()
            ]
            return JSONResponse({"items": items, "next_cursor": None})

        async def skill(request: Request) -> Response:
            slug = request.path_params["slug"]
            self._record(request, None)
            c = self.components.get(slug)
            if c is None:
                return problem(404, "component_not_found", f"no component {slug!r}")
            text = self.skill_override or c["skill"]
            if text is None:
                return problem(404, "skill_not_found", f"{slug} has no skill")
            return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

        async def install(request: Request) -> Response:
            body = await request.json()
            self._record(request, body)
            if request.headers.get("authorization") != "Bearer good":
                return problem(401, "token_invalid", "the access token is not valid")
            ctx = request.headers.get("x-atlilith-org", "-")
            if ctx == "viewers":
                return problem(403, "forbidden", "installing needs the role owner or admin", "ask an owner")
            c = self.components.get(body["component"])
            if c is None:
                return problem(
                    404,
                    "component_not_found",
                    f"no component {body['component']!r}",
                    "search with GET /v1/registry?q=",
                )
            key = (ctx, c["slug"])
            if key in self.installed:
                return JSONResponse(self.installed[key], status_code=200)
            self.installed[key] = {
                "component": c["slug"],
                "name": c["name"],
                "version": c["version"],
                "tools_hash": "h",
                "config": body.get("config") or {},
                "installed_at": "2026-01-01T00:00:00Z",
                "updated_at": "2026-01-01T00:00:00Z",
            }
            return JSONResponse(self.installed[key], status_code=201)

        async def patch(request: Request) -> Response:
            body = await request.json()
            self._record(request, body)
            key = (request.headers.get("x-atlilith-org", "-"), request.path_params["slug"])
            if key not in self.installed:
                return problem(404, "not_installed", "not installed")
            self.installed[key]["config"] = body["config"]
            return JSONResponse(self.installed[key])

        self.app = Starlette(
            routes=[
                Route("/v1/registry", registry),
                Route("/v1/registry/{slug}/skill", skill),
                Route("/v1/installations", install, methods=["POST"]),
                Route("/v1/installations/{slug}", patch, methods=["PATCH"]),
            ]
        )
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error")
        )

    def _record(self, request: Request, body: Any) -> None:
        self.requests.append((request.method, request.url.path, dict(request.headers), body))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def stub() -> Iterator[StubRegistry]:
    registry = StubRegistry()
    thread = threading.Thread(target=registry.server.run, daemon=True)
    thread.start()
    while not registry.server.started:
        time.sleep(0.02)
    try:
        yield registry
    finally:
        registry.server.should_exit = True
        thread.join(10)


@pytest.fixture
def cli(tmp_path: Path, stub: StubRegistry) -> Cli:
    return Cli(tmp_path / "config", stub.url)


def test_add_installs_for_the_context_and_writes_the_skill(
    cli: Cli, stub: StubRegistry, tmp_path: Path
) -> None:
    skills = tmp_path / "project" / ".claude" / "skills"
    add = ("add", "bookings", "--dir", str(skills), "--server", stub.url)
    first = cli(*add, "--org", "acme", "--config", '{"tz": "Europe/Paris"}', ATLILITH_TOKEN="good")
    assert first.exit_code == 0, first.output
    target = skills / "bookings" / "SKILL.md"
    assert target.read_text() == SKILL
    assert (
        "Installed bookings 1.2.0 for the org acme" in first.stdout
        and f"Wrote its skill to {target}" in first.stdout
    )
    method, path, headers, body = stub.requests[0]
    assert (method, path, body) == (
        "POST",
        "/v1/installations",
        {"component": "bookings", "config": {"tz": "Europe/Paris"}},
    )
    assert headers["x-atlilith-org"] == "acme" and headers["authorization"] == "Bearer good"
    assert stub.installed[("acme", "bookings")]["config"] == {"tz": "Europe/Paris"}

    # Again: already installed, the skill is unchanged; a new --config is applied with PATCH.
    again = one_json(cli(*add, "--org", "acme", "--config", '{"tz": "UTC"}', "--json", ATLILITH_TOKEN="good"))
    assert again["created"] is False and again["config_updated"] is True
    assert again["installation"]["config"] == {"tz": "UTC"}
    assert again["skill"]["action"] == "unchanged" and again["skill"]["path"] == str(target)

    # Another context is another installation.
    personal = one_json(cli(*add, "--org", "personal", "--json", ATLILITH_TOKEN="good"))
    assert personal["created"] is True and ("personal", "bookings") in stub.installed


def test_add_updates_its_own_copy_but_keeps_local_edits_unless_forced(
    cli: Cli, stub: StubRegistry, tmp_path: Path
) -> None:
    skills = tmp_path / "skills"
    args = ("add", "bookings", "--dir", str(skills), "--server", stub.url)
    assert cli(*args, ATLILITH_TOKEN="good").exit_code == 0
    target = skills / "bookings" / "SKILL.md"

    stub.skill_override = SKILL + "\nNew section.\n"
    updated = cli(*args, ATLILITH_TOKEN="good")
    assert updated.exit_code == 0 and "Updated its skill" in updated.stdout
    assert target.read_text().endswith("New section.\n")

    target.write_text("my own notes\n")
    stub.skill_override = SKILL + "\nNewer section.\n"
    kept = cli(*args, ATLILITH_TOKEN="good")
    assert kept.exit_code == client_cli.EXIT_FAILED and "modified locally" in kept.stdout
    assert target.read_text() == "my own notes\n"
    kept_json = one_json(cli(*args, "--json", ATLILITH_TOKEN="good"))
    assert kept_json["skill"]["action"] == "kept"

    forced = cli(*args, "--force", ATLILITH_TOKEN="good")
    assert forced.exit_code == 0 and "Overwrote your local changes" in forced.stdout
    assert target.read_text().endswith("Newer section.\n")
    manifest = json.loads((skills / ".atlilith.json").read_text())
    assert manifest["skills"]["bookings"]["component"] == "bookings"


def test_add_refusals_and_a_component_without_a_skill(cli: Cli, stub: StubRegistry, tmp_path: Path) -> None:
    skills = tmp_path / "skills"
    missing = cli("add", "nope", "--dir", str(skills), "--server", stub.url, ATLILITH_TOKEN="good")
    assert missing.exit_code == client_cli.EXIT_NOT_FOUND
    assert "component_not_found" in missing.stderr and "GET /v1/registry?q=" in missing.stderr
    denied = cli(
        "add",
        "bookings",
        "--org",
        "viewers",
        "--dir",
        str(skills),
        "--server",
        stub.url,
        ATLILITH_TOKEN="good",
    )
    assert denied.exit_code == client_cli.EXIT_FORBIDDEN and "owner or admin" in denied.stderr
    unauth = cli("add", "bookings", "--dir", str(skills), "--server", stub.url, ATLILITH_TOKEN="bad")
    assert unauth.exit_code == client_cli.EXIT_AUTH and "atlilith login" in unauth.stderr
    bad_config = cli("add", "bookings", "--config", "[1]", "--server", stub.url, ATLILITH_TOKEN="good")
    assert bad_config.exit_code == 2 and "JSON object" in bad_config.stderr
    for r in (missing, denied, unauth, bad_config):
        no_traceback(r)
    assert not skills.exists()

    bare = cli("add", "echo", "--dir", str(skills), "--server", stub.url, ATLILITH_TOKEN="good")
    assert bare.exit_code == 0 and "no skill" in bare.stdout and not skills.exists()

    stub.skill_override = "---\nname: ../../etc\ndescription: x\n---\n"
    evil = cli("add", "bookings", "--dir", str(skills), "--server", stub.url, ATLILITH_TOKEN="good")
    assert evil.exit_code == client_cli.EXIT_PROBLEM and "not a valid skill folder name" in evil.stderr
    assert not (tmp_path / "etc").exists() and not skills.exists()


def test_search_shows_a_table_with_the_installed_state(cli: Cli, stub: StubRegistry, tmp_path: Path) -> None:
    assert (
        cli(
            "add",
            "bookings",
            "--org",
            "acme",
            "--dir",
            str(tmp_path / "s"),
            "--server",
            stub.url,
            ATLILITH_TOKEN="good",
        ).exit_code
        == 0
    )
    table = cli("search", "appoint", "--org", "acme", "--server", stub.url, ATLILITH_TOKEN="good")
    assert table.exit_code == 0, table.output
    for text in (
        "slug",
        "installed",
        "summary",
        "bookings",
        "Bookings",
        "builtin",
        "1.2.0",
        "yes",
        "Appointments and availability.",
    ):
        assert text in table.stdout
    assert "More text." not in table.stdout  # the first line of the description is the summary
    assert stub.requests[-1][:2] == ("GET", "/v1/registry")
    assert stub.requests[-1][2]["x-atlilith-org"] == "acme"

    page = one_json(cli("search", "--json", "--server", stub.url, ATLILITH_TOKEN="good"))
    assert {c["slug"]: c["installed"] for c in page["items"]} == {"bookings": False, "echo": False}
    empty = cli("search", "zzz", "--server", stub.url, ATLILITH_TOKEN="good")
    assert empty.exit_code == 0 and "No component matches" in empty.stdout
