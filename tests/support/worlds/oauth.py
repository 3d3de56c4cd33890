"""The victim's OAuth side: a connected app (an approved request) and a request they opened
but have not decided yet."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.oauth import pkce, register, request_id
from tests.support.world import Victim


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    h = v.person.h()
    registered = await register(client, name=f"Host {v.secret}")
    approved = await request_id(client, registered["client_id"], pkce())
    r = await client.post(f"/v1/oauth/requests/{approved}/approve", json={"org": v.org}, headers=h)
    assert r.status_code == 200, r.text
    connection = (await client.get("/v1/oauth/connections", headers=h)).json()["items"][0]
    v.add("connection_id", connection["id"])
    pending = await request_id(client, registered["client_id"], pkce())
    assert (await client.get(f"/v1/oauth/requests/{pending}", headers=h)).status_code == 200
    v.add("request_id", pending)


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    h = v.person.h()
    return {
        "connections": [
            (c["id"], c["revoked_at"], c["context"])
            for c in (await client.get("/v1/oauth/connections", headers=h)).json()["items"]
        ],
        "pending": [
            (await client.get(f"/v1/oauth/requests/{rid}", headers=h)).status_code
            for rid in v.refs["request_id"]
        ],
    }


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/oauth/requests/{request_id}/approve"): lambda v: {"org": None},
}
