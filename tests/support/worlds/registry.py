"""The victim's installations: built-ins in both contexts, with configs carrying markers; a peer
component registered by an admin (public entry, secret shown once)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.billing import make_admin
from tests.support.registry import install
from tests.support.world import Victim

COMPONENT = "bookings"


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    a, org = v.person, v.org
    personal_marker, org_marker = f"cfg-p-{uuid.uuid4().hex[:10]}", f"cfg-o-{uuid.uuid4().hex[:10]}"
    await install(client, a, COMPONENT, config={"note": personal_marker})
    await install(client, a, COMPONENT, org=org, config={"note": org_marker})
    await install(client, a, "messaging", "jobs", org=org)
    v.markers |= {personal_marker, org_marker}
    # Component slugs are public; what the victim installed and configured is not.
    v.refs.setdefault("slug", []).append(COMPONENT)
    admin = await make_admin(client)
    peer = await client.post(
        "/v1/admin/components",
        json={
            "slug": f"vcomp-{uuid.uuid4().hex[:8]}",
            "name": "Victim's peer component",
            "base_url": "http://127.0.0.1:9",
            "actions": [{"name": "draft", "price": 2}],
        },
        headers=admin.h(),
    )
    assert peer.status_code == 201, peer.text
    v.markers.add(peer.json()["secret"])


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for label, headers in (("personal", v.person.h()), ("org", v.person.h(org=v.org))):
        r = await client.get("/v1/installations?limit=100", headers=headers)
        assert r.status_code == 200, r.text
        state[label] = [(i["component"], i["config"], i["updated_at"]) for i in r.json()["items"]]
    return state


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/installations"): lambda v: {"component": COMPONENT, "config": {"x": 1}},
    ("PATCH", "/v1/installations/{slug}"): lambda v: {"config": {"overwritten": True}},
    ("POST", "/v1/admin/components"): lambda v: {
        "slug": f"mcomp-{uuid.uuid4().hex[:8]}",
        "name": "Attacker's",
        "base_url": "http://127.0.0.1:9",
        "actions": [{"name": "x", "price": 1}],
    },
    ("PATCH", "/v1/admin/components/{slug}"): lambda v: {"name": "Renamed"},
}

ARGS: dict[str, Any] = {
    "component": lambda v: COMPONENT,
    "config": lambda v: '{"overwritten": true}',
}
