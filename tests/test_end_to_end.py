"""One provider's day across features: a client writes, the provider answers, books the client,
and analytics reports it — every number derived from the real events the features emitted."""

from __future__ import annotations

from decimal import Decimal

import httpx

from core.relay import Relay
from core.uow import Database
from tests.conftest import make_org, signup
from tests.core.bookings.helpers import at, day_ahead, make_service, set_hours
from tests.support.messaging import api_key, inbound


async def test_messages_and_bookings_flow_into_the_org_summary(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signup(client, "prov")
    org = await make_org(client, owner)
    ho = owner.h(org=org)

    # A client writes in through a mail-sync peer; the provider answers in the portal.
    ingest = await api_key(client, owner, ["messaging:ingest"], org=org)
    got = await inbound(
        client,
        {"Authorization": f"Bearer {ingest}"},
        channel="portal",
        client_email="lea@example.com",
        client_name="Léa",
        body="Bonjour, un rendez-vous mardi ?",
    )
    thread_id = got["results"][0]["thread_id"]
    sent = await client.post(
        f"/v1/messaging/threads/{thread_id}/messages", json={"body": "Oui, 10h ?"}, headers=ho
    )
    assert sent.status_code == 201, sent.text

    # The provider books the client into a priced service.
    await set_hours(client, owner, org=org)
    service = await make_service(client, owner, org=org, price_amount="45.00", currency="EUR")
    day = day_ahead(5)
    hold = await client.post(
        "/v1/bookings/holds",
        json={"service_id": service["id"], "start_at": at(day, "10:00"), "client_email": "lea@example.com"},
        headers=ho,
    )
    assert hold.status_code == 201, hold.text
    confirmed = await client.post(f"/v1/bookings/{hold.json()['id']}/confirm", json={}, headers=ho)
    assert confirmed.status_code == 200, confirmed.text

    await Relay(db).drain()  # deliveries, and the analytics handler

    summary = await client.get("/v1/analytics/summary", headers=ho)  # default: the last 30 days
    assert summary.status_code == 200, summary.text
    body = summary.json()
    assert body["context"]["kind"] == "org"
    messages = body["messages"]
    assert messages["received"] == 1 and messages["sent"] == 1, messages
    assert body["first_response"]["answered"] == 1 and body["first_response"]["median_seconds"] >= 0
    bookings = body["bookings"]
    assert bookings["confirmed"] == 1, bookings
    revenue = {r["currency"]: Decimal(str(r["booked"])) for r in body["revenue"]}
    assert revenue == {"EUR": Decimal("45.00")}
    assert [m["member"]["slug"] for m in body["members"]] == [owner.slug]

    # The same person's personal context counted none of it.
    personal = await client.get("/v1/analytics/summary", headers=owner.h(org="personal"))
    assert personal.json()["messages"]["received"] == 0 and personal.json()["bookings"]["confirmed"] == 0
