"""The registry's catalogue: built-ins synced from the served code, search relevance, details,
versions and skills over REST."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx
from mcp import Client
from sqlalchemy import func, select

from core import __version__
from core import registry as service
from core.registry.models import Component, ComponentVersion
from core.registry.schemas import ComponentSpec, ToolData
from core.uow import Database
from servers.mcp import build_server, toolsets
from servers.registry_sync import builtin_specs, sync_builtins
from tests.conftest import signup
from tools.base import ToolRuntime

EXPECTED = {"analytics", "bookings", "credits", "identity", "jobs", "messaging", "registry", "tenancy"}


async def test_builtins_are_the_served_toolsets(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    # The whole catalogue, page by page: peers other modules registered in this database sort
    # among the built-ins (by slug), so one page of 100 could end before "tenancy".
    items: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        r = await client.get("/v1/registry", params=params, headers=a.h())
        assert r.status_code == 200, r.text
        items |= {c["slug"]: c for c in r.json()["items"]}
        cursor = r.json()["next_cursor"]
        if cursor is None:
            break
    served = {ts.name: ts for ts in toolsets(ToolRuntime(db)) if not ts.platform}
    assert set(items) >= EXPECTED and set(served) <= set(items)
    for slug, ts in served.items():
        c = items[slug]
        assert c["kind"] == "builtin" and c["version"] == __version__ and c["toolset"] == slug
        assert c["tools_count"] == len(ts.tools)
        assert c["rank"] is None
    # Always-available components count as installed; nothing else is for a new person.
    assert {s for s, c in items.items() if c["installed"]} == {"registry", "tenancy"}
    assert {x["name"] for x in items["identity"]["actions"]} == {
        "dedupe-clients",
        "resolve-company",
        "resolve-person",
    }
    assert all(x["price"] >= 0 and x["unit"] for x in items["identity"]["actions"])


async def test_component_detail_matches_what_tools_list_serves(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    r = await client.get("/v1/registry/bookings", headers=a.h())
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["skill_name"] == "bookings" and c["base_url"] is None and c["health_url"] is None
    assert c["availability"] == "install"
    async with Client(build_server(db, static_token=a.token, toolset_names=["all"])) as mc:
        await client.post("/v1/installations", json={"component": "bookings"}, headers=a.h())
        listed = [t for t in (await mc.list_tools()).tools if t.name.startswith("bookings_")]
    assert sorted(t["name"] for t in c["tools"]) == sorted(t.name for t in listed)
    served = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed]
    canonical = json.dumps(
        sorted(served, key=lambda d: d["name"]), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert c["tools_hash"] == hashlib.sha256(canonical.encode()).hexdigest()
    for t in c["tools"]:
        assert set(t["annotations"]) >= {"readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"}
    ident = (await client.get("/v1/registry/identity", headers=a.h())).json()
    action = next(x for x in ident["actions"] if x["name"] == "resolve-person")
    assert action["input_schema"]["type"] == "object" and action["output_schema"]
    assert "jobs:write" in ident["scopes"]  # its actions run as jobs
    jobs = (await client.get("/v1/registry/jobs", headers=a.h())).json()
    assert set(jobs["scopes"]) == {"jobs:read", "jobs:write"}
    missing = await client.get("/v1/registry/nope-nope", headers=a.h())
    assert missing.status_code == 404 and missing.json()["code"] == "component_not_found"
    assert (await client.get("/v1/registry")).status_code == 401


async def test_skill_is_served_as_markdown(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.get("/v1/registry/bookings/skill", headers=a.h())
    assert r.status_code == 200 and r.headers["content-type"] == "text/markdown; charset=utf-8"
    assert r.text.startswith("---\nname: bookings\n")


async def test_sync_is_idempotent_and_versions_follow_the_tools(db: Database) -> None:
    again = await sync_builtins(db)
    assert again.created == [] and again.changed == [] and set(again.unchanged) >= EXPECTED
    spec = ComponentSpec(
        slug="zz-sync-probe",
        name="Sync probe",
        version="1.0.0",
        description="a probe",
        toolset=None,
        tools=[ToolData(name="probe_a", description="first", definition={"name": "probe_a"})],
    )
    specs = [*builtin_specs(db), spec]
    async with db.system() as uow:
        first = await service.sync_builtins(uow, specs)
    assert first.created == ["zz-sync-probe"]
    changed = spec.model_copy(
        update={"tools": [ToolData(name="probe_a", description="second", definition={"name": "b"})]}
    )
    async with db.system() as uow:
        report = await service.sync_builtins(uow, [*builtin_specs(db), changed])
    assert report.changed == ["zz-sync-probe"]
    bumped = changed.model_copy(update={"version": "1.1.0"})
    async with db.system() as uow:
        await service.sync_builtins(uow, [*builtin_specs(db), bumped])
    async with db.system() as uow:
        await service.sync_builtins(uow, [*builtin_specs(db), bumped])  # nothing new
        row = (
            await uow.session.execute(select(Component).where(Component.slug == "zz-sync-probe"))
        ).scalar_one()
        versions = list(
            (
                await uow.session.execute(
                    select(ComponentVersion.version, ComponentVersion.tools_hash)
                    .where(ComponentVersion.component_id == row.id)
                    .order_by(ComponentVersion.created_at)
                )
            ).all()
        )
    assert [v[0] for v in versions] == ["1.0.0", "1.0.0", "1.1.0"]
    assert versions[0][1] != versions[1][1] and versions[1][1] == versions[2][1]
    # No longer served: retired (hidden), and back when served again.
    async with db.system() as uow:
        gone = await service.sync_builtins(uow, builtin_specs(db))
    assert gone.retired == ["zz-sync-probe"]


async def test_versions_newest_first_over_rest(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.get("/v1/registry/tenancy/versions", headers=a.h())
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert items and items[0]["version"] == __version__
    stamps = [i["created_at"] for i in items]
    assert stamps == sorted(stamps, reverse=True)


async def test_parallel_syncs_write_each_entry_once(db: Database) -> None:
    """Several processes starting at once: same result, no duplicate, no error."""
    probe = ComponentSpec(slug="zz-race-probe", name="Race", version="1", description="race", tools=[])
    specs = [*builtin_specs(db), probe]

    async def one() -> list[str]:
        async with db.system() as uow:
            return (await service.sync_builtins(uow, specs)).created

    created = await asyncio.gather(*(one() for _ in range(6)))
    assert sorted(c for batch in created for c in batch) == ["zz-race-probe"]
    async with db.system() as uow:
        count = (
            await uow.session.execute(select(func.count()).where(Component.slug == "zz-race-probe"))
        ).scalar_one()
        versions = (
            await uow.session.execute(
                select(func.count())
                .select_from(ComponentVersion)
                .join(Component, Component.id == ComponentVersion.component_id)
                .where(Component.slug == "zz-race-probe")
            )
        ).scalar_one()
        await service.sync_builtins(uow, builtin_specs(db))  # retire the probe again
    assert (count, versions) == (1, 1)


async def search(
    client: httpx.AsyncClient, headers: dict[str, str], q: str, kind: str | None = None, limit: int = 20
) -> list[str]:
    params = {"q": q, "limit": str(limit)} | ({"kind": kind} if kind else {})
    r = await client.get("/v1/registry", params=params, headers=headers)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    ranks = [i["rank"] for i in items]
    assert ranks == sorted(ranks, reverse=True) and all(isinstance(x, float) for x in ranks)
    return [i["slug"] for i in items]


async def test_search_ranks_the_right_component_first(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    h = a.h()
    # Among the built-in components: peers other tests registered in this database may say "booking" too.
    for q in ("book", "bookings", "calendar", "schedule", "appointment", "bokings", "availabilty"):
        found = await search(client, h, q, "builtin")
        assert found and found[0] == "bookings", (q, found)
    for q, first in (
        ("inbox", "messaging"),
        ("reply to clients", "messaging"),
        ("credit balance", "credits"),
        ("funnel", "analytics"),
        ("resolve company domain", "identity"),
        ("install uninstall", "registry"),
        ("org members", "tenancy"),
        ("mesaging", "messaging"),
        ("analytcs", "analytics"),
    ):
        found = await search(client, h, q, "builtin")
        assert found and found[0] == first, (q, found)
    assert await search(client, h, "xylophone quartz") == []
    # Punctuation and tsquery syntax are plain text, never an error.
    assert (await client.get("/v1/registry", params={"q": "book & ) :* !"}, headers=h)).status_code == 200


async def test_search_pages_keep_the_ranking(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    # Every match in one page (the most a page holds): peers other modules registered in this
    # database match "clients" too, and the default page of 20 could end before the walk does.
    full = await search(client, a.h(), "clients", limit=100)
    assert 3 <= len(full) < 100
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = {"q": "clients", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/registry", params=params, headers=a.h())).json()
        seen += [i["slug"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == full
    peers_only = await client.get("/v1/registry", params={"kind": "peer", "q": "bookings"}, headers=a.h())
    assert all(i["kind"] == "peer" for i in peers_only.json()["items"])
