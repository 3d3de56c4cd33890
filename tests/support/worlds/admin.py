"""The victim as seen by the platform admin: an audit entry about them that carries their marker
(a grant's memo). Admin routes and tools must refuse everyone else, and no tenant route may
ever show an audit row."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.billing import make_admin
from tests.support.world import Victim


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    admin = await make_admin(client)
    body = {"person": v.person.slug, "credits": 1, "memo": f"audit-{v.secret}"}
    r = await client.post("/v1/admin/credits/grants", json=body, headers=admin.h())
    assert r.status_code == 201, r.text
    audit = await client.get(
        "/v1/admin/audit", params={"action": "credits.grant", "target_id": v.person.slug}, headers=admin.h()
    )
    assert audit.status_code == 200 and v.secret in audit.text, audit.text
    v.add("audit_id", audit.json()["items"][0]["id"])


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    # Suspending the victim would end their sessions: their own view answering at all is the state.
    me = await client.get("/v1/me", headers=v.person.h())
    return {"me": me.status_code, "slug": me.json().get("person", {}).get("slug")}


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/admin/persons/{person}/suspend"): lambda v: {"reason": "mallory was here"},
    ("POST", "/v1/admin/persons/{person}/reactivate"): lambda v: {"reason": "mallory again"},
}

ARGS: dict[str, Any] = {
    "reason": lambda v: "mallory was here",
    "credits": lambda v: 1000,
    "to_org": lambda v: v.org,
}
