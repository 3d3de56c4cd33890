"""Peer components are one operation for platform admins: the registry entry and the runnable
billing peer are written together (or not at all); everyone else is refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import signup
from tests.support.billing import FakePeer, all_peers, grant, make_admin, register_peer
from tests.support.registry import install


def body(base_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "slug": f"drafts-{uuid.uuid4().hex[:8]}",
        "name": "Reply drafts",
        "version": "1.0.0",
        "description": "Drafts replies to client messages in the provider's voice.",
        "base_url": base_url,
        "actions": [{"name": "draft-reply", "price": 5, "summary": "Draft a reply to a thread"}],
        "scopes": ["messaging:read"],
        "skill_text": "---\nname: drafts\ndescription: Draft replies. Use when asked.\n---\n\nBody.\n",
        **extra,
    }


async def test_register_is_one_operation_and_the_peer_runs(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    async with FakePeer() as fake:
        data = body(fake.base_url)
        r = await client.post("/v1/admin/components", json=data, headers=admin.h())
        assert r.status_code == 201, r.text
        out = r.json()
        assert out["secret"].startswith("whsec_")
        c = out["component"]
        assert (c["slug"], c["kind"], c["base_url"]) == (data["slug"], "peer", fake.base_url)
        assert c["health_url"] == f"{fake.base_url}/health" and c["tools"] == [] and c["tools_count"] == 0
        assert [x["name"] for x in c["actions"]] == ["draft-reply"] and c["actions"][0]["price"] == 5
        # In the catalogue (searchable), and runnable through billing at once.
        found = (await client.get("/v1/registry", params={"q": "draft replies"}, headers=a.h())).json()
        slugs = [i["slug"] for i in found["items"]]
        # First, unless behind other peers of the same name that other tests registered.
        assert data["slug"] in slugs
        assert all(i["kind"] == "peer" for i in found["items"][: slugs.index(data["slug"])])
        skill = await client.get(f"/v1/registry/{data['slug']}/skill", headers=a.h())
        assert skill.text == data["skill_text"].strip()
        peers = await all_peers(client, admin)
        assert data["slug"] in {p["slug"] for p in peers}
        await grant(client, admin, 10, person=a.slug)
        await install(client, a, data["slug"])
        run = await client.post(
            f"/v1/run/{data['slug']}/draft-reply", json={"input": {"thread": "t1"}}, headers=a.h()
        )
        assert run.status_code == 202, run.text


async def test_a_failure_writes_neither_side(client: httpx.AsyncClient) -> None:
    admin = await make_admin(client)
    # A built-in's slug: the registry refuses, so no billing peer may be left behind.
    r = await client.post(
        "/v1/admin/components", json=body("http://127.0.0.1:9", slug="bookings"), headers=admin.h()
    )
    assert r.status_code == 409 and r.json()["code"] == "component_exists", r.text
    peers = await all_peers(client, admin)
    assert "bookings" not in {p["slug"] for p in peers}
    # The billing-shaped door registers the same way: a runnable peer is always in the catalogue,
    # and its slug is then taken for both doors.
    slug = f"legacy-{uuid.uuid4().hex[:8]}"
    await register_peer(
        client, admin, "http://127.0.0.1:9", slug=slug, name="Old door", actions=[{"name": "xx", "price": 1}]
    )
    listed = await client.get(f"/v1/registry/{slug}", headers=admin.h())
    assert listed.status_code == 200 and listed.json()["kind"] == "peer", listed.text
    assert [a["name"] for a in listed.json()["actions"]] == ["xx"]
    r = await client.post(
        "/v1/admin/components", json=body("http://127.0.0.1:9", slug=slug), headers=admin.h()
    )
    assert r.status_code == 409 and r.json()["code"] == "component_exists", r.text
    moved = await client.patch(
        f"/v1/admin/peers/{slug}", json={"actions": [{"name": "yy", "price": 3}]}, headers=admin.h()
    )
    assert moved.status_code == 200, moved.text
    after = (await client.get(f"/v1/registry/{slug}", headers=admin.h())).json()
    assert [(a["name"], a["price"]) for a in after["actions"]] == [("yy", 3)]
    assert after["tools_hash"] != listed.json()["tools_hash"]
    again = await client.post("/v1/admin/components", json=body("http://127.0.0.1:9"), headers=admin.h())
    dup = await client.post(
        "/v1/admin/components",
        json=body("http://127.0.0.1:9", slug=again.json()["component"]["slug"]),
        headers=admin.h(),
    )
    assert dup.status_code == 409 and dup.json()["code"] == "component_exists"


async def test_update_keeps_both_sides_in_step_and_versions(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    data = body("http://127.0.0.1:9")
    first = (await client.post("/v1/admin/components", json=data, headers=admin.h())).json()["component"]
    slug = data["slug"]
    r = await client.patch(
        f"/v1/admin/components/{slug}",
        json={"actions": [{"name": "draft-reply", "price": 7}, {"name": "summarise", "price": 2}]},
        headers=admin.h(),
    )
    assert r.status_code == 200, r.text
    changed = r.json()["component"]
    assert changed["tools_hash"] != first["tools_hash"] and r.json()["secret"] is None
    peer = next(p for p in await all_peers(client, admin) if p["slug"] == slug)
    assert [x["price"] for x in peer["actions"]] == [7, 2]
    r = await client.patch(
        f"/v1/admin/components/{slug}",
        json={"version": "2.0.0", "base_url": "http://127.0.0.1:10", "rotate_secret": True},
        headers=admin.h(),
    )
    assert r.status_code == 200 and r.json()["secret"].startswith("whsec_")
    assert r.json()["component"]["health_url"] == "http://127.0.0.1:10/health"
    versions = (await client.get(f"/v1/registry/{slug}/versions", headers=a.h())).json()["items"]
    assert [v["version"] for v in versions] == ["2.0.0", "1.0.0", "1.0.0"]
    # Disabled: gone from the catalogue (and from billing's runnable peers).
    r = await client.patch(f"/v1/admin/components/{slug}", json={"enabled": False}, headers=admin.h())
    assert r.status_code == 200, r.text
    assert (await client.get(f"/v1/registry/{slug}", headers=a.h())).status_code == 404
    built_in = await client.patch("/v1/admin/components/bookings", json={"name": "X"}, headers=admin.h())
    assert built_in.status_code == 404 and built_in.json()["code"] == "component_not_found"


async def test_admin_routes_refuse_everyone_else(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.post("/v1/admin/components", json=body("http://127.0.0.1:9"), headers=a.h())
    assert r.status_code == 403 and r.json()["code"] == "platform_admin_required"
    r = await client.patch("/v1/admin/components/bookings", json={"name": "X"}, headers=a.h())
    assert r.status_code == 403 and r.json()["code"] == "platform_admin_required"
    assert (await client.post("/v1/admin/components", json=body("http://127.0.0.1:9"))).status_code == 401
