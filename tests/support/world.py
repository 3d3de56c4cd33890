"""A victim with data everywhere, and markers that must never show up for anyone else."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import httpx

from tests.conftest import Account, make_org, signup, slug


@dataclass
class Victim:
    person: Account
    org: str
    org_id: str
    personal_client: str
    org_client: str
    brand: str
    personal_brand: str
    api_key: str
    invitation: str
    markers: set[str] = field(default_factory=set)
    ids: set[uuid.UUID] = field(default_factory=set)


async def build_victim(client: httpx.AsyncClient) -> Victim:
    a = await signup(client, "victim")
    org = await make_org(client, a, "vorg")
    org_id = (await client.get(f"/v1/orgs/{org}", headers=a.h())).json()["id"]
    secret = uuid.uuid4().hex[:12]
    pc = (
        await client.post(
            "/v1/clients",
            json={
                "name": f"Secret Personal {secret}",
                "email": f"personal-{secret}@victim.example",
                "notes": f"note-{secret}",
            },
            headers=a.h(),
        )
    ).json()
    oc = (
        await client.post(
            "/v1/clients",
            json={
                "name": f"Secret Org {secret}",
                "email": f"org-{secret}@victim.example",
                "phone": "+33611223344",
            },
            headers=a.h(org=org),
        )
    ).json()
    brand = (
        await client.post(
            "/v1/brands",
            json={"slug": "vbrand", "name": f"Brand {secret}", "domains": [f"{secret}.victim.example"]},
            headers=a.h(org=org),
        )
    ).json()
    pbrand = (
        await client.post(
            "/v1/brands",
            json={"slug": "pbrand", "name": f"PBrand {secret}", "domains": [f"p{secret}.victim.example"]},
            headers=a.h(),
        )
    ).json()
    key = (
        await client.post("/v1/api-keys", json={"name": f"key-{secret}", "scopes": ["*"]}, headers=a.h())
    ).json()
    invitee = await signup(client, "invitee")
    inv = (
        await client.post(f"/v1/orgs/{org}/invitations", json={"person": invitee.slug}, headers=a.h())
    ).json()
    v = Victim(a, org, org_id, pc["id"], oc["id"], brand["id"], pbrand["id"], key["id"], inv["id"])
    # Person ids and slugs are handles (anyone may add a person to an org by slug); emails, the
    # data and its ids are what must never cross.
    v.markers = {
        secret,
        a.email,
        invitee.email,
        org_id,
        pc["id"],
        oc["id"],
        brand["id"],
        pbrand["id"],
        key["id"],
        inv["id"],
        key["prefix"],
    }
    v.ids = {
        uuid.UUID(x)
        for x in (a.id, org_id, pc["id"], oc["id"], brand["id"], pbrand["id"], key["id"], inv["id"])
    }
    return v


def leaked(v: Victim, text: str) -> set[str]:
    return {m for m in v.markers if m in text}


async def snapshot(client: httpx.AsyncClient, v: Victim) -> dict[str, object]:
    """What the victim can see of their own data, to prove attacks changed nothing."""
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


def new_slug() -> str:
    return slug("x")
