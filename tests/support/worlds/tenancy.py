"""The victim's tenancy data: clients (personal and org), brands, an API key, an invitation."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import signup
from tests.support.world import Victim, created, new_slug


async def build(client: httpx.AsyncClient, v: Victim) -> None:
    a, org, secret = v.person, v.org, v.secret
    pc = await created(
        client,
        "/v1/clients",
        {
            "name": f"Secret Personal {secret}",
            "email": f"personal-{secret}@victim.example",
            "notes": f"note-{secret}",
        },
        a.h(),
    )
    oc = await created(
        client,
        "/v1/clients",
        {"name": f"Secret Org {secret}", "email": f"org-{secret}@victim.example", "phone": "+33611223344"},
        a.h(org=org),
    )
    v.add("client_id", oc["id"])
    v.add("client_id", pc["id"])
    # A brand in each context: the org's, and the person's own.
    for slug_prefix, name, domain, headers in (
        ("vbrand", "Brand", f"{secret}.victim.example", a.h(org=org)),
        ("pbrand", "PBrand", f"p{secret}.victim.example", a.h()),
    ):
        body = {"slug": f"{slug_prefix}-{secret}", "name": f"{name} {secret}", "domains": [domain]}
        v.add("brand_id", (await created(client, "/v1/brands", body, headers))["id"])
    key = await created(client, "/v1/api-keys", {"name": f"key-{secret}", "scopes": ["*"]}, a.h())
    v.add("key_id", key["id"])
    v.markers.add(key["prefix"])
    invitee = await signup(client, "invitee")
    inv = await created(client, f"/v1/orgs/{org}/invitations", {"person": invitee.slug}, a.h())
    v.add("invitation_id", inv["id"])
    v.markers.add(invitee.email)


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, Any]:
    h, ho = v.person.h(), v.person.h(org=v.org)
    return {
        "clients": sorted(
            (c["id"], c["name"], c["email"], c["notes"])
            for c in (await client.get("/v1/clients", headers=h)).json()["items"]
        ),
        "org_clients": sorted(
            (c["id"], c["name"], c["email"])
            for c in (await client.get("/v1/clients", headers=ho)).json()["items"]
        ),
        "brands": sorted(
            (b["id"], b["name"], tuple(b["domains"]))
            for b in (await client.get("/v1/brands", headers=ho)).json()["items"]
        ),
        "pbrands": sorted(
            (b["id"], b["name"]) for b in (await client.get("/v1/brands", headers=h)).json()["items"]
        ),
        "org": (await client.get(f"/v1/orgs/{v.org}", headers=h)).json(),
        "members": (await client.get(f"/v1/orgs/{v.org}/members", headers=h)).json(),
        "invitations": [
            (i["id"], i["status"])
            for i in (await client.get(f"/v1/orgs/{v.org}/invitations", headers=h)).json()["items"]
        ],
        "keys": [
            (k["id"], k["revoked_at"]) for k in (await client.get("/v1/api-keys", headers=h)).json()["items"]
        ],
    }


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/auth/signup"): None,  # anonymous flows: covered by their own tests
    ("POST", "/v1/auth/login"): None,
    ("POST", "/v1/auth/refresh"): None,
    ("POST", "/v1/auth/logout"): None,  # would end the attacker's own session mid-test
    ("POST", "/v1/auth/switch"): lambda v: {"org": v.org},
    ("PATCH", "/v1/me"): lambda v: {"display_name": "Mallory"},
    ("POST", "/v1/me/password"): lambda v: {
        "current_password": "wrong-one",
        "new_password": "new-password-1",
    },
    ("POST", "/v1/api-keys"): lambda v: {"name": "k", "scopes": ["*"], "org": v.org},
    ("POST", "/v1/orgs"): lambda v: {"slug": new_slug(), "name": "M"},
    ("PATCH", "/v1/orgs/{slug}"): lambda v: {"name": "pwned"},
    ("POST", "/v1/orgs/{slug}/transfer"): lambda v: {"person": v.person.slug},
    ("PATCH", "/v1/orgs/{slug}/members/{person}"): lambda v: {"role": "member"},
    ("POST", "/v1/orgs/{slug}/invitations"): lambda v: {"email": "mallory@example.com", "role": "admin"},
    ("POST", "/v1/brands"): lambda v: {"slug": new_slug(), "name": "M"},
    ("PATCH", "/v1/brands/{brand_id}"): lambda v: {"name": "pwned", "domains": []},
    ("POST", "/v1/clients"): lambda v: {"name": "M"},
    ("PATCH", "/v1/clients/{client_id}"): lambda v: {"name": "pwned", "notes": "pwned"},
}

ARGS: dict[str, Any] = {
    "person": lambda v: v.person.slug,
    "slug": lambda v: new_slug(),
    "name": lambda v: "pwned",
    "role": lambda v: "admin",
    "q": lambda v: "Secret",
    "notes": lambda v: "pwned",
}
