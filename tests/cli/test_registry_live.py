"""`atlilith add` and `atlilith search` against the real registry of a live server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.cli.live import Cli, one_json
from tests.conftest import ROOT, Account, make_org, signup


@pytest.fixture
async def owner(atl: Cli, http: httpx.AsyncClient) -> tuple[Account, str]:
    """A person signed in to the CLI, and an org they own."""
    a = await signup(http)
    org = await make_org(http, a)
    atl.login(a.slug, a.password)
    return a, org


async def test_add_installs_and_writes_the_served_skill(
    atl: Cli, http: httpx.AsyncClient, tmp_path: Path, owner: tuple[Account, str]
) -> None:
    a, org = owner
    skills = tmp_path / ".claude" / "skills"

    # Find a built-in that has a skill, as an agent would.
    page = one_json(atl("search", "--json", "--limit", "100"))
    served = {c["slug"] for c in page["items"]}
    assert "bookings" in served, served
    skill_text = (await http.get("/v1/registry/bookings/skill", headers=a.h())).text

    added = atl("add", "bookings", "--dir", str(skills), "--org", org)
    assert added.exit_code == 0, added.output
    target = skills / "bookings" / "SKILL.md"
    assert target.read_text() == skill_text
    assert skill_text == (ROOT / "skills" / "bookings" / "SKILL.md").read_text()
    assert f"Wrote its skill to {target}" in added.stdout

    installed = (await http.get("/v1/installations", headers=a.h(org=org))).json()["items"]
    assert "bookings" in {i["component"] for i in installed}

    again = one_json(atl("add", "bookings", "--dir", str(skills), "--org", org, "--json"))
    assert again["created"] is False and again["skill"]["action"] == "unchanged"
    assert again["installation"]["component"] == "bookings"


async def test_search_shows_the_installed_state_of_the_context(
    atl: Cli, http: httpx.AsyncClient, tmp_path: Path, owner: tuple[Account, str]
) -> None:
    _, org = owner

    def installed(*org_args: str) -> dict[str, bool]:
        page = one_json(atl("search", "--json", "--limit", "100", *org_args))
        return {c["slug"]: c["installed"] for c in page["items"]}

    personal_before = installed()
    assert installed("--org", org)["messaging"] is False
    assert atl("add", "messaging", "--org", org, "--dir", str(tmp_path / "s")).exit_code == 0
    after = one_json(atl("search", "message", "--json", "--org", org))["items"]
    assert after and after[0]["slug"] == "messaging" and after[0]["installed"] is True
    assert after[0]["rank"] is not None
    # Installed in the org only: the personal context's view is unchanged.
    assert installed() == personal_before

    table = atl("search", "message", "--org", org)
    assert table.exit_code == 0, table.output
    row = next(line for line in table.stdout.splitlines() if "messaging" in line)
    assert "yes" in row
