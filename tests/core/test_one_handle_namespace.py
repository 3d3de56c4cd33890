"""Persons and orgs share one namespace of handles: a handle names a public booking page either
way, so an org cannot be created with a person's handle (taking over their page), nor a person
sign up with an org's, nor either be renamed onto the other's -- under concurrency too."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import make_org, signup, slug


async def test_an_org_cannot_take_a_persons_handle_nor_the_reverse(client: httpx.AsyncClient) -> None:
    ada, eve = await signup(client), await signup(client)
    r = await client.post("/v1/orgs", json={"slug": ada.slug, "name": "Not Ada"}, headers=eve.h())
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "slug_taken" and [e["field"] for e in r.json()["errors"]] == ["slug"]
    page = await client.get(f"/book/{ada.slug}")
    assert "Not Ada" not in page.text
    org = await make_org(client, eve)
    r = await client.post(
        "/v1/auth/signup",
        json={
            "email": f"{slug()}@example.com",
            "password": "a-long-password",
            "slug": org,
            "display_name": "X",
        },
    )
    assert r.status_code == 409 and r.json()["code"] == "slug_taken", r.text


async def test_a_person_and_an_org_racing_for_one_handle_one_wins(client: httpx.AsyncClient) -> None:
    eve = await signup(client)
    wanted = slug("race")
    org = client.post("/v1/orgs", json={"slug": wanted, "name": "Race"}, headers=eve.h())
    person = client.post(
        "/v1/auth/signup",
        json={
            "email": f"{wanted}@example.com",
            "password": "a-long-password",
            "slug": wanted,
            "display_name": "R",
        },
    )
    answers = await asyncio.gather(org, person)
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
