"""Orgs, members, invitations, transfer, brands, clients — the rules, through REST."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

import httpx
import pytest
from sqlalchemy.exc import DBAPIError

from core.uow import Database
from tests.conftest import Account, join_org, make_org, signup, slug
from tests.support.rls import raw_as
from tests.support.sql import system_sql


class Team(TypedDict):
    """An org and four people: its owner, an admin, a member, and an outsider."""

    org: str
    owner: Account
    admin: Account
    member: Account
    outsider: Account


@pytest.fixture
async def team(client: httpx.AsyncClient) -> Team:
    owner, admin, member, outsider = [await signup(client, p) for p in ("own", "adm", "mem", "out")]
    org = await make_org(client, owner)
    await join_org(client, org, owner, admin, "admin")
    await join_org(client, org, admin, member)
    return {"org": org, "owner": owner, "admin": admin, "member": member, "outsider": outsider}


async def test_creator_owns_and_lists(client: httpx.AsyncClient, team: Team) -> None:
    org, owner, member = team["org"], team["owner"], team["member"]
    got = (await client.get(f"/v1/orgs/{org}", headers=owner.h())).json()
    assert got["role"] == "owner" and got["owner"]["slug"] == owner.slug
    mine = (await client.get("/v1/orgs", headers=member.h())).json()["items"]
    assert [(o["slug"], o["role"]) for o in mine] == [(org, "member")]
    members = (await client.get(f"/v1/orgs/{org}/members", headers=member.h())).json()["items"]
    assert {m["person"]["slug"]: m["role"] for m in members} == {
        owner.slug: "owner",
        team["admin"].slug: "admin",
        member.slug: "member",
    }


async def test_member_reads_but_cannot_administer(client: httpx.AsyncClient, team: Team) -> None:
    org, member, outsider = team["org"], team["member"], team["outsider"]
    assert (await client.get(f"/v1/orgs/{org}", headers=member.h())).status_code == 200
    for r in (
        await client.patch(f"/v1/orgs/{org}", json={"name": "X"}, headers=member.h()),
        await client.patch(
            f"/v1/orgs/{org}/members/{team['admin'].slug}", json={"role": "member"}, headers=member.h()
        ),
        await client.delete(f"/v1/orgs/{org}/members/{team['admin'].slug}", headers=member.h()),
        await client.post(f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=member.h()),
        await client.post("/v1/brands", json={"slug": slug("b"), "name": "B"}, headers=member.h(org=org)),
    ):
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "insufficient_role"


async def test_admin_cannot_touch_the_owner_nor_make_an_owner(client: httpx.AsyncClient, team: Team) -> None:
    org, owner, admin, member = team["org"], team["owner"], team["admin"], team["member"]
    demote = await client.patch(
        f"/v1/orgs/{org}/members/{owner.slug}", json={"role": "member"}, headers=admin.h()
    )
    assert demote.status_code == 403 and demote.json()["code"] == "cannot_change_owner"
    remove = await client.delete(f"/v1/orgs/{org}/members/{owner.slug}", headers=admin.h())
    assert remove.status_code == 403 and remove.json()["code"] == "cannot_remove_owner"
    promote = await client.patch(
        f"/v1/orgs/{org}/members/{member.slug}", json={"role": "owner"}, headers=admin.h()
    )
    assert promote.status_code == 422  # `owner` is not an assignable role
    invite_owner = await client.post(
        f"/v1/orgs/{org}/invitations",
        json={"person": team["outsider"].slug, "role": "owner"},
        headers=admin.h(),
    )
    assert invite_owner.status_code == 422
    transfer = await client.post(f"/v1/orgs/{org}/transfer", json={"person": admin.slug}, headers=admin.h())
    assert transfer.status_code == 403
    # Admin may manage members and rename, but not change the slug.
    assert (
        await client.patch(f"/v1/orgs/{org}/members/{member.slug}", json={"role": "admin"}, headers=admin.h())
    ).status_code == 200
    assert (await client.patch(f"/v1/orgs/{org}", json={"name": "Renamed"}, headers=admin.h())).json()[
        "name"
    ] == "Renamed"
    assert (
        await client.patch(f"/v1/orgs/{org}", json={"slug": slug("o")}, headers=admin.h())
    ).status_code == 403


async def test_leaving_is_allowed_except_for_the_owner(client: httpx.AsyncClient, team: Team) -> None:
    org, owner, member = team["org"], team["owner"], team["member"]
    stay = await client.delete(f"/v1/orgs/{org}/members/{owner.slug}", headers=owner.h())
    assert stay.status_code == 403 and stay.json()["code"] == "owner_cannot_leave"
    assert (
        await client.delete(f"/v1/orgs/{org}/members/{member.slug}", headers=member.h())
    ).status_code == 204
    assert (await client.get(f"/v1/orgs/{org}", headers=member.h())).status_code == 403


async def test_ownership_moves_only_when_the_member_offered_it_accepts(
    client: httpx.AsyncClient, team: Team, db: Database
) -> None:
    """An owner could add anyone (no consent asked) and hand them an org its owner cannot leave:
    the transfer is now an offer the member accepts."""
    org, owner, admin, outsider = team["org"], team["owner"], team["admin"], team["outsider"]
    member = team["member"]
    nope = await client.post(f"/v1/orgs/{org}/transfer", json={"person": outsider.slug}, headers=owner.h())
    assert nope.status_code == 404 and nope.json()["code"] == "member_not_found"
    r = await client.post(f"/v1/orgs/{org}/transfer", json={"person": admin.slug}, headers=owner.h())
    assert r.status_code == 200, r.text
    assert (
        r.json()["owner"]["slug"] == owner.slug
        and r.json()["ownership_offer"]["person"]["slug"] == admin.slug
    )
    seen = (await client.get("/v1/orgs", headers=admin.h())).json()["items"][0]
    assert seen["role"] == "admin" and seen["ownership_offer"]["person"]["slug"] == admin.slug
    for who in (member, owner):  # only the member it names takes it
        taken = await client.post(f"/v1/orgs/{org}/transfer/accept", headers=who.h())
        assert taken.status_code == 404 and taken.json()["code"] == "no_ownership_offer"
    r = await client.post(f"/v1/orgs/{org}/transfer/accept", headers=admin.h())
    assert r.status_code == 200, r.text
    assert (
        r.json()["owner"]["slug"] == admin.slug
        and r.json()["role"] == "owner"
        and r.json()["ownership_offer"] is None
    )
    members = {
        m["person"]["slug"]: m["role"]
        for m in (await client.get(f"/v1/orgs/{org}/members", headers=owner.h())).json()["items"]
    }
    assert members[admin.slug] == "owner" and members[owner.slug] == "admin"
    # The database keeps orgs.owner_id and the single owner row in agreement.
    row = (
        await system_sql(
            db,
            "SELECT o.owner_id, array_agg(m.person_id) FILTER (WHERE m.role = 'owner') AS owners"
            " FROM platform.orgs o JOIN platform.org_members m ON m.org_id = o.id WHERE o.slug = :s GROUP BY o.owner_id",
            {"s": org},
        )
    ).one()
    assert row.owners == [row.owner_id] and str(row.owner_id) == admin.id


async def test_an_ownership_offer_is_declined_withdrawn_or_ends_with_the_membership(
    db: Database, client: httpx.AsyncClient, team: Team
) -> None:
    org, owner, admin, member = team["org"], team["owner"], team["admin"], team["member"]

    async def offer(to: Account) -> None:
        r = await client.post(f"/v1/orgs/{org}/transfer", json={"person": to.slug}, headers=owner.h())
        assert r.status_code == 200 and r.json()["ownership_offer"]["person"]["slug"] == to.slug, r.text

    async def offered() -> Any:
        return (await client.get(f"/v1/orgs/{org}", headers=owner.h())).json()["ownership_offer"]

    await offer(admin)
    assert (await client.delete(f"/v1/orgs/{org}/transfer", headers=member.h())).status_code == 404
    declined = await client.delete(f"/v1/orgs/{org}/transfer", headers=admin.h())
    assert (
        declined.status_code == 200 and declined.json()["ownership_offer"] is None and await offered() is None
    )
    await offer(admin)
    await offer(member)  # one offer at a time: the newer names the member
    assert (await client.post(f"/v1/orgs/{org}/transfer/accept", headers=admin.h())).status_code == 404
    assert (await client.delete(f"/v1/orgs/{org}/transfer", headers=owner.h())).status_code == 200
    await offer(member)
    assert (
        await client.delete(f"/v1/orgs/{org}/members/{member.slug}", headers=member.h())
    ).status_code == 204
    assert await offered() is None
    # Ended in the row, not only hidden: a member who leaves loses the org's context (and its
    # row) with their membership, so the offer must end before the membership goes.
    stored = await system_sql(db, "SELECT offered_owner_id FROM platform.orgs WHERE slug = :s", {"s": org})
    assert stored.scalar_one() is None
    assert (await client.get(f"/v1/orgs/{org}", headers=owner.h())).json()["owner"]["slug"] == owner.slug


async def test_database_refuses_an_owner_row_out_of_line_with_orgs(
    db: Database, client: httpx.AsyncClient, team: Team
) -> None:
    """Even code that bypassed the service could not leave an org with zero or two owners."""
    from core.errors import Conflict

    org = team["org"]
    for sql in (
        "UPDATE platform.org_members SET role = 'admin' WHERE role = 'owner' AND org_id = (SELECT id FROM platform.orgs WHERE slug = :s)",
        "UPDATE platform.org_members SET role = 'owner' WHERE role = 'member' AND org_id = (SELECT id FROM platform.orgs WHERE slug = :s)",
    ):
        with pytest.raises(Conflict):
            await system_sql(db, sql, {"s": org})


async def test_nobody_joins_an_org_without_accepting(
    db: Database, client: httpx.AsyncClient, team: Team
) -> None:
    """An owner could add any person by handle: the org showed in their switcher and its tools in
    their agent's list without their say. Joining is now the invitee's act, at both layers."""
    org, owner, outsider = team["org"], team["owner"], team["outsider"]
    added = await client.post(f"/v1/orgs/{org}/members", json={"person": outsider.slug}, headers=owner.h())
    assert added.status_code == 405, added.text
    # Row-level security: the org's own context cannot write someone else's membership, even
    # with an invitation pending for them; only the invitee's context can, by accepting it.
    pending = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h()
    )
    assert pending.status_code == 201, pending.text
    org_id = (await client.get(f"/v1/orgs/{org}", headers=owner.h())).json()["id"]
    insert = "INSERT INTO platform.org_members (org_id, person_id, role) VALUES (:o, :p, 'member') RETURNING person_id"
    with pytest.raises(DBAPIError, match="row-level security"):
        await raw_as(db, "user", owner.id, org_id, insert, {"o": org_id, "p": outsider.id})
    rows = await raw_as(db, "user", outsider.id, "", insert, {"o": org_id, "p": outsider.id})
    assert [str(r[0]) for r in rows] == [outsider.id]
    assert [o["slug"] for o in (await client.get("/v1/orgs", headers=outsider.h())).json()["items"]] == [org]


async def test_no_update_makes_a_member_either(db: Database, client: httpx.AsyncClient, team: Team) -> None:
    """Past the insert policy, two updates led to a membership nobody accepted: the org's context
    re-pointing a member's row at someone else, and an invitee reviving (or promoting) their own
    revoked invitation before accepting it. The database refuses both."""
    org, owner, member, outsider = team["org"], team["owner"], team["member"], team["outsider"]
    org_id = (await client.get(f"/v1/orgs/{org}", headers=owner.h())).json()["id"]
    with pytest.raises(DBAPIError, match="never change"):
        await raw_as(
            db,
            "user",
            owner.id,
            org_id,
            "UPDATE platform.org_members SET person_id = :p WHERE org_id = :o AND person_id = :m",
            {"p": outsider.id, "o": org_id, "m": member.id},
        )
    invited = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h()
    )
    revoked = await client.delete(f"/v1/orgs/{org}/invitations/{invited.json()['id']}", headers=owner.h())
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    for change in ("status = 'pending'", "role = 'admin'", "expires_at = now() + interval '1 year'"):
        with pytest.raises(DBAPIError, match="only answered"):
            await raw_as(
                db,
                "user",
                outsider.id,
                "",
                f"UPDATE platform.invitations SET {change} WHERE id = :i",
                {"i": invited.json()["id"]},
            )
    # What the app itself does still works: an answer, and a role change by an admin.
    again = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h()
    )
    declined = await client.post(f"/v1/invitations/{again.json()['id']}/decline", headers=outsider.h())
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    promoted = await client.patch(
        f"/v1/orgs/{org}/members/{member.slug}", json={"role": "admin"}, headers=owner.h()
    )
    assert promoted.status_code == 200, promoted.text


async def test_invitation_flow_by_slug_and_by_email_before_signup(
    client: httpx.AsyncClient, team: Team
) -> None:
    org, owner, outsider = team["org"], team["owner"], team["outsider"]
    inv = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": outsider.slug, "role": "admin"}, headers=owner.h()
    )
    assert inv.status_code == 201, inv.text
    inv_id = inv.json()["id"]
    dup = await client.post(f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h())
    assert dup.status_code == 409 and dup.json()["code"] == "invitation_pending"
    mine = (await client.get("/v1/me/invitations", headers=outsider.h())).json()["items"]
    assert [(i["id"], i["org"]["slug"], i["invited_by"]["slug"]) for i in mine] == [(inv_id, org, owner.slug)]
    # Nobody else can accept it.
    other = await client.post(f"/v1/invitations/{inv_id}/accept", headers=team["member"].h())
    assert other.status_code == 404
    ok = await client.post(f"/v1/invitations/{inv_id}/accept", headers=outsider.h())
    assert ok.status_code == 200 and ok.json()["role"] == "admin"
    twice = await client.post(f"/v1/invitations/{inv_id}/accept", headers=outsider.h())
    assert twice.status_code == 409 and twice.json()["code"] == "invitation_not_pending"
    member = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h()
    )
    assert member.status_code == 409 and member.json()["code"] == "already_member"
    assert "change their role" in member.json()["hint"] and "[[" not in member.text

    email = f"{slug('future')}@example.com"
    by_mail = await client.post(f"/v1/orgs/{org}/invitations", json={"email": email}, headers=owner.h())
    assert by_mail.status_code == 201 and by_mail.json()["invitee"] is None
    newcomer = (
        await client.post(
            "/v1/auth/signup",
            json={"email": email, "password": "long-enough-pw", "slug": slug("new"), "display_name": "New"},
        )
    ).json()
    pending = (
        await client.get(
            "/v1/me/invitations", headers={"Authorization": f"Bearer {newcomer['access_token']}"}
        )
    ).json()
    assert [i["id"] for i in pending["items"]] == [by_mail.json()["id"]]
    declined = await client.post(
        f"/v1/invitations/{by_mail.json()['id']}/decline",
        headers={"Authorization": f"Bearer {newcomer['access_token']}"},
    )
    assert declined.status_code == 200 and declined.json()["status"] == "declined"


async def test_revoked_and_expired_invitations_cannot_be_accepted(
    client: httpx.AsyncClient, team: Team, db: Database
) -> None:
    org, owner, outsider = team["org"], team["owner"], team["outsider"]
    inv = (
        await client.post(f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h())
    ).json()
    revoked = await client.delete(f"/v1/orgs/{org}/invitations/{inv['id']}", headers=owner.h())
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert (await client.post(f"/v1/invitations/{inv['id']}/accept", headers=outsider.h())).status_code == 409

    inv2 = (
        await client.post(f"/v1/orgs/{org}/invitations", json={"person": outsider.slug}, headers=owner.h())
    ).json()
    await system_sql(
        db,
        "UPDATE platform.invitations SET expires_at = now() - interval '1 minute' WHERE id = :i",
        {"i": inv2["id"]},
    )
    late = await client.post(f"/v1/invitations/{inv2['id']}/accept", headers=outsider.h())
    assert late.status_code == 410 and late.json()["code"] == "invitation_expired"


async def test_owner_deletes_org_with_everything_it_owns(
    client: httpx.AsyncClient, team: Team, db: Database
) -> None:
    org, owner, admin = team["org"], team["owner"], team["admin"]
    await client.post("/v1/clients", json={"name": "C"}, headers=owner.h(org=org))
    assert (await client.delete(f"/v1/orgs/{org}", headers=admin.h())).status_code == 403
    assert (await client.delete(f"/v1/orgs/{org}", headers=owner.h())).status_code == 204
    assert (await client.get(f"/v1/orgs/{org}", headers=owner.h())).status_code == 403
    left = (
        await system_sql(
            db,
            "SELECT (SELECT count(*) FROM platform.orgs WHERE slug = :s)"
            " + (SELECT count(*) FROM platform.clients c WHERE c.org_id NOT IN (SELECT id FROM platform.orgs) AND c.org_id IS NOT NULL)",
            {"s": org},
        )
    ).scalar_one()
    assert left == 0


async def test_duplicate_org_slug_is_409_and_concurrent_creates_make_one(client: httpx.AsyncClient) -> None:
    a, b = await signup(client), await signup(client)
    s = slug("race")
    results = await asyncio.gather(
        *(client.post("/v1/orgs", json={"slug": s, "name": "R"}, headers=who.h()) for who in (a, b, a, b))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201, 409, 409, 409], [r.text for r in results]
    assert all(r.json()["code"] == "slug_taken" for r in results if r.status_code == 409)


async def test_idempotency_key_replays_the_first_result(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    key = {"Idempotency-Key": "create-client-" + slug()}
    body = {"name": "Idem", "email": f"{slug()}@example.com"}
    first, second = await asyncio.gather(
        client.post("/v1/clients", json=body, headers={**a.h(), **key}),
        client.post("/v1/clients", json=body, headers={**a.h(), **key}),
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    listed = (await client.get("/v1/clients", headers=a.h(), params={"q": body["email"]})).json()["items"]
    assert len(listed) == 1
    other = await client.post("/v1/clients", json={**body, "name": "Different"}, headers={**a.h(), **key})
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_brands_domains_unique_across_the_platform(client: httpx.AsyncClient, team: Team) -> None:
    org, owner, outsider = team["org"], team["owner"], team["outsider"]
    domain = f"{slug('d')}.example"
    shop, mine = slug("shop"), slug("mine")
    r = await client.post(
        "/v1/brands",
        json={"slug": shop, "name": "Shop", "domains": [domain.upper()], "config": {"theme": "x"}},
        headers=owner.h(org=org),
    )
    assert r.status_code == 201, r.text
    brand = r.json()
    assert brand["domains"] == [domain] and brand["context"] == "org"
    taken = await client.post(
        "/v1/brands", json={"slug": mine, "name": "Mine", "domains": [domain]}, headers=outsider.h()
    )
    assert taken.status_code == 409 and taken.json()["code"] == "domain_taken"
    # A brand slug names its public site (/site/{slug}): taken in another context is taken.
    same_slug = await client.post("/v1/brands", json={"slug": shop, "name": "Copy"}, headers=outsider.h())
    assert same_slug.status_code == 409 and same_slug.json()["code"] == "slug_taken"
    upd = await client.patch(
        f"/v1/brands/{brand['id']}", json={"domains": [f"www.{domain}"]}, headers=owner.h(org=org)
    )
    assert upd.json()["domains"] == [f"www.{domain}"]
    now_free = await client.post(
        "/v1/brands", json={"slug": mine, "name": "Mine", "domains": [domain]}, headers=outsider.h()
    )
    assert now_free.status_code == 201
    big = await client.post(
        "/v1/brands",
        json={"slug": slug("big"), "name": "Big", "config": {"x": "y" * 70_000}},
        headers=outsider.h(),
    )
    assert big.status_code == 422 and big.json()["errors"][0]["field"] == "config"
    bad = await client.post(
        "/v1/brands",
        json={"slug": slug("bad"), "name": "Bad", "domains": ["not a domain"]},
        headers=outsider.h(),
    )
    assert bad.status_code == 422


async def test_clients_crud_search_phone_normalization_and_pagination(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    made = []
    for i in range(25):
        r = await client.post(
            "/v1/clients",
            json={
                "name": f"Client {i:02d}",
                "email": f"c{i}-{a.slug}@example.com",
                "phone": "+33 6 12 34 56 78" if i == 0 else None,
            },
            headers=a.h(),
        )
        assert r.status_code == 201, r.text
        made.append(r.json())
    assert made[0]["phone"] == "+33612345678"
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/clients", headers=a.h(), params=params)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 25 and set(seen) == {c["id"] for c in made}
    assert [
        c["name"]
        for c in (await client.get("/v1/clients", headers=a.h(), params={"q": "client 07"})).json()["items"]
    ] == ["Client 07"]
    bad_cursor = await client.get("/v1/clients", headers=a.h(), params={"cursor": "zzz"})
    assert bad_cursor.status_code == 422 and bad_cursor.json()["code"] == "invalid_cursor"
    too_big = await client.get("/v1/clients", headers=a.h(), params={"limit": 101})
    assert too_big.status_code == 422
    cid = made[3]["id"]
    upd = await client.patch(
        f"/v1/clients/{cid}", json={"notes": "likes mornings", "phone": "06 12 34 56 78"}, headers=a.h()
    )
    assert (
        upd.status_code == 422 and upd.json()["code"] == "invalid_phone"
    )  # no country code, default region US
    upd = await client.patch(f"/v1/clients/{cid}", json={"notes": "likes mornings"}, headers=a.h())
    assert upd.json()["notes"] == "likes mornings"
    dup = await client.patch(f"/v1/clients/{cid}", json={"email": made[4]["email"]}, headers=a.h())
    assert dup.status_code == 409 and dup.json()["code"] == "client_exists"
    assert dup.json()["hint"] == "update that client instead (find it with `GET /v1/clients`, q=<email>)"
    assert (await client.delete(f"/v1/clients/{cid}", headers=a.h())).status_code == 204
    assert (await client.get(f"/v1/clients/{cid}", headers=a.h())).status_code == 404
