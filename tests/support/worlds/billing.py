"""The victim's billing and identity data: credits (granted, personal and org), jobs (queued and
finished, personal and org), a peer component, identity resolutions matching their clients."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.billing import grant, make_admin, register_peer
from tests.support.registry import install
from tests.support.world import Victim


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    a, org, secret = v.person, v.org, v.secret
    admin = await make_admin(client)
    await grant(client, admin, 50, person=a.slug)
    await grant(client, admin, 70, org=org, expires_at="2099-01-01T00:00:00Z")
    await install(client, a, "identity")
    await install(client, a, "identity", org=org)
    for headers in (a.h(), a.h(org=org)):
        run = await client.post(
            "/v1/run/identity/resolve-person",
            json={"input": {"email": f"run-{secret}@victim.example"}},
            headers=headers,
        )
        assert run.status_code == 202, run.text
        v.add("job_id", run.json()["job_id"])
    # A personal client of our own (the tenancy world's come later; its tests count the org's).
    made = await client.post(
        "/v1/clients",
        json={"name": f"Ident {secret}", "email": f"ident-{secret}@victim.example"},
        headers=a.h(),
    )
    assert made.status_code == 201, made.text
    v.ids.add(uuid.UUID(made.json()["id"]))
    v.markers.add(made.json()["id"])
    now = await client.post(
        "/v1/identity/resolve-person", json={"email": f"IDENT-{secret}@victim.example"}, headers=a.h()
    )
    assert now.status_code == 200 and now.json()["client_ids"] == [made.json()["id"]], now.text
    assert now.json()["polyseme_id"] == made.json()["polyseme_person_id"]
    v.add("job_id", now.json()["job_id"])
    v.markers.add(now.json()["polyseme_id"])
    dedupe = await client.post("/v1/run/identity/dedupe-clients", json={"input": {}}, headers=a.h(org=org))
    assert dedupe.status_code == 202, dedupe.text
    v.add("job_id", dedupe.json()["job_id"])
    peer = await register_peer(
        client,
        admin,
        "http://127.0.0.1:9",
        slug=f"vpeer-{uuid.uuid4().hex[:8]}",  # public: must not carry the victim's marker
        name="Victim's peer",
        actions=[{"name": "draft", "price": 2}],
    )
    # Peers are platform-wide (their slug is public to every context); their secret is not.
    v.add("peer", peer["slug"], marker=False)
    v.markers.add(peer["secret"])
    v.refs["component"] = ["identity"]
    v.refs["action"] = ["resolve-person"]
    v.refs["entity"] = ["billing.usage", "identity.persons"]


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for label, headers in (("personal", v.person.h()), ("org", v.person.h(org=v.org))):
        balance = (await client.get("/v1/credits", headers=headers)).json()
        state[f"{label}_balance"] = (balance["balance"], balance["held"], balance["low_balance_threshold"])
        state[f"{label}_jobs"] = sorted(
            (j["id"], j["status"], j["credits_captured"])
            for j in (await client.get("/v1/jobs?limit=100", headers=headers)).json()["items"]
        )
        state[f"{label}_ledger"] = [
            (e["id"], e["kind"], e["amount"])
            for e in (await client.get("/v1/credits/ledger?limit=100", headers=headers)).json()["items"]
        ]
    return state


_PERSON = {"email": "mallory-probe@example.com"}

BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/quote/{component}/{action}"): lambda v: {"input": _PERSON},
    ("POST", "/v1/run/{component}/{action}"): lambda v: {"input": _PERSON},
    ("POST", "/v1/jobs/{job_id}/callback"): lambda v: {"status": "succeeded", "output": {"pwned": True}},
    ("PUT", "/v1/credits/settings"): lambda v: {"low_balance_threshold": 1000},
    ("POST", "/v1/credits/purchases"): lambda v: {
        "id": f"evt-{v.secret}",
        "type": "credits.purchased",
        "data": {"tenant_id": v.org_id, "credits": 1000},
    },
    ("POST", "/v1/admin/credits/grants"): lambda v: {"org": v.org, "credits": 1000},
    ("POST", "/v1/admin/jobs/{job_id}/refund"): lambda v: {},
    ("POST", "/v1/admin/peers"): lambda v: {
        "slug": "mallory-peer",
        "name": "M",
        "base_url": "http://127.0.0.1:9",
        "actions": [{"name": "x", "price": 0}],
    },
    ("PATCH", "/v1/admin/peers/{peer}"): lambda v: {"base_url": "http://127.0.0.1:10", "rotate_secret": True},
    ("POST", "/v1/identity/resolve-person"): lambda v: _PERSON,
    ("POST", "/v1/identity/resolve-company"): lambda v: {"domain": "example.com"},
}

ARGS: dict[str, Any] = {
    "component": lambda v: "identity",
    "action": lambda v: "resolve-person",
    "input_json": lambda v: '{"email": "mallory-probe@example.com"}',
    "email": lambda v: "mallory-probe@example.com",
    "domain": lambda v: "example.com",
}
