"""A refusal's hint says what would get it done, for the caller who got it (and a handle in
another case is no refusal at all): an admin asking for
an owner's operation is told to ask the owner (not "an owner or admin"); a member removed while
holding a token switched into the org is told to name `personal` or switch (leaving the org out
would act in it again)."""

from __future__ import annotations

import httpx

from tests.conftest import join_org, make_org, signup


async def test_hints_say_what_would_get_it_done(client: httpx.AsyncClient) -> None:
    owner, admin = await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, admin, "admin")
    transfer = await client.post(f"/v1/orgs/{org}/transfer", json={"person": admin.slug}, headers=admin.h())
    assert transfer.status_code == 403 and transfer.json()["code"] == "insufficient_role"
    assert transfer.json()["hint"] == "ask the org's owner to do it"

    switched = await client.post("/v1/auth/switch", json={"org": org}, headers=admin.h())
    assert switched.status_code == 200, switched.text
    in_org = {"Authorization": f"Bearer {switched.json()['access_token']}"}
    removed = await client.delete(f"/v1/orgs/{org}/members/{admin.slug}", headers=owner.h())
    assert removed.status_code in (200, 204), removed.text
    refused = await client.get("/v1/me", headers=in_org)
    assert refused.status_code == 403 and refused.json()["code"] == "not_a_member", refused.text
    assert "passing org `personal`" in refused.json()["hint"] and "omitting" not in refused.json()["hint"]
    personal = await client.get("/v1/me", headers={**in_org, "X-Atlilith-Org": "personal"})
    assert personal.status_code == 200, personal.text


async def test_a_handle_in_another_case_names_the_same_org(client: httpx.AsyncClient) -> None:
    owner = await signup(client)
    org = await make_org(client, owner)
    r = await client.get(f"/v1/orgs/{org.upper()}", headers=owner.h())
    assert r.status_code == 200 and r.json()["slug"] == org, r.text
    members = await client.get(f"/v1/orgs/{org.upper()}/members", headers=owner.h())
    assert members.status_code == 200 and owner.slug in members.text, members.text
