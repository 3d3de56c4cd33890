"""Analytics keep tenants apart: another person or org never sees an event or an aggregate —
not through totals, breakdown values, raw listings, nor through ids they happen to reuse."""

from __future__ import annotations

import httpx

from core.uow import Database
from tests.conftest import join_org, make_org, signup
from tests.core.analytics.support import sql


async def test_the_same_event_id_in_two_tenants_is_two_events(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Ids dedupe per tenant: nobody can block, or probe for, another tenant's event ids."""
    a, b = await signup(client), await signup(client)
    org = await make_org(client, a)
    event = {"id": "shared-id-1", "name": "page_view"}
    for headers in (a.h(), a.h(org=org), b.h()):
        r = await client.post("/v1/analytics/events", json=event, headers=headers)
        assert r.json()["accepted"] == 1 and r.json()["duplicates"] == 0
    rows = await sql(
        db, "SELECT count(DISTINCT tenant_id) FROM analytics.events WHERE id = :i", i=r.json()["id"]
    )
    assert rows[0][0] == 3


async def test_people_and_orgs_only_ever_see_their_own_numbers(client: httpx.AsyncClient) -> None:
    owner, colleague, stranger = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, owner)
    other_org = await make_org(client, stranger)
    await join_org(client, org, owner, colleague)

    async def send(headers: dict[str, str], plan: str, n: int) -> None:
        events = [
            {"name": "page_view", "client_id": f"{plan}-{i}", "properties": {"plan": plan}} for i in range(n)
        ]
        assert (await client.post("/v1/analytics/events", json=events, headers=headers)).json()[
            "accepted"
        ] == n

    await send(owner.h(), "owner-personal", 2)
    await send(owner.h(org=org), "org-by-owner", 3)
    await send(colleague.h(org=org), "org-by-colleague", 4)
    await send(colleague.h(), "colleague-personal", 5)
    await send(stranger.h(org=other_org), "stranger-org", 6)

    async def seen(headers: dict[str, str], measure: str = "count") -> dict[str | None, int]:
        # The last 24 hours, not "today": events sent just before midnight are yesterday's after it.
        body = {"events": ["page_view"], "period": "last_24_hours", "breakdown": "plan", "measure": measure}
        r = await client.post("/v1/analytics/trends", json=body, headers=headers)
        assert r.status_code == 200, r.text
        return {s["untrusted_breakdown_value"]: s["total"] for s in r.json()["series"]}

    assert await seen(owner.h()) == {"owner-personal": 2}
    assert await seen(owner.h(org=org)) == {"org-by-owner": 3, "org-by-colleague": 4}
    assert await seen(colleague.h(org=org), "unique_clients") == {"org-by-owner": 3, "org-by-colleague": 4}
    assert await seen(colleague.h()) == {"colleague-personal": 5}
    assert await seen(stranger.h()) == {}
    assert await seen(stranger.h(org=other_org)) == {"stranger-org": 6}
    refused = await client.post(
        "/v1/analytics/trends", json={"events": ["page_view"]}, headers=stranger.h(org=org)
    )
    assert refused.status_code == 403 and refused.json()["code"] == "not_a_member"

    # Raw listings: the org's events, with who produced them only for owners and admins.
    as_owner = (
        await client.get("/v1/analytics/events", params={"limit": 100}, headers=owner.h(org=org))
    ).json()
    as_colleague = (
        await client.get("/v1/analytics/events", params={"limit": 100}, headers=colleague.h(org=org))
    ).json()
    assert len(as_owner["items"]) == len(as_colleague["items"]) == 7
    assert {e["member_id"] for e in as_owner["items"]} == {owner.id, colleague.id}
    assert {e["member_id"] for e in as_colleague["items"]} == {None}
    mine = (await client.get("/v1/analytics/events", headers=colleague.h())).json()["items"]
    assert {e["member_id"] for e in mine} == {colleague.id}

    # Leaving the org ends access at once.
    assert (
        await client.delete(f"/v1/orgs/{org}/members/{colleague.slug}", headers=colleague.h())
    ).status_code in (200, 204)
    gone = await client.post(
        "/v1/analytics/trends", json={"events": ["page_view"]}, headers=colleague.h(org=org)
    )
    assert gone.status_code == 403
