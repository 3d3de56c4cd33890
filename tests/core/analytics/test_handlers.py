"""Domain events become analytics events through the subscribed handler: mapped, tolerant of
missing keys, counted once however often they are delivered, purged with their org."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from core.analytics.client_sets import compact_client_sets
from core.analytics.mapping import BY_EVENT, MAPPINGS
from core.analytics.store import ROLLUP_TABLES
from core.events import load_handlers, run_handler_once
from core.outbox import Event
from core.relay import Relay
from core.uow import Database
from tests.conftest import make_org, signup
from tests.core.analytics.support import org_id, sql

HANDLER = "analytics.record_domain_event"


async def emit(db: Database, person: str, org: str | None, name: str, data: dict[str, Any]) -> uuid.UUID:
    async with db.service(uuid.UUID(person), uuid.UUID(org) if org else None) as uow:
        return uow.emit(name, data)


async def analytics_rows(db: Database, event_id: uuid.UUID) -> list[Any]:
    return await sql(
        db,
        "SELECT e.*, (SELECT count(*) FROM analytics.events i WHERE i.id = e.id) AS ids"
        " FROM analytics.events e WHERE e.id = :id",
        id=event_id,
    )


async def rollup_total(db: Database, tenant: str, name: str) -> int:
    rows = await sql(
        db,
        "SELECT grain, sum(n) FROM analytics.counts WHERE tenant_id = CAST(:t AS uuid) AND name = :n"
        " GROUP BY grain",
        t=tenant,
        n=name,
    )
    per_grain = {int(g): int(n) for g, n in rows}
    assert per_grain.get(15, 0) == per_grain.get(60, 0), per_grain
    return per_grain.get(15, 0)


def test_every_mapping_subscribes_and_maps_to_a_platform_name() -> None:
    spec = load_handlers().handlers[HANDLER]
    for mapping in MAPPINGS:
        assert spec.matches(mapping.event), mapping.event
        assert "/" in mapping.analytics_name  # ingest can never forge it
    # Inngest takes at most 10 triggers per function: wildcards cover each entity's actions.
    assert len(spec.patterns) <= 10 and "bookings/booking.*" in spec.patterns
    assert "bookings/booking.reminder_due" not in BY_EVENT  # delivered, then skipped
    assert "bookings/booking.confirmed" in BY_EVENT and "messaging/message.received" in BY_EVENT


async def test_domain_events_become_analytics_events(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    oid = await org_id(client, a, org)
    client_id = str(uuid.uuid4())
    confirmed = await emit(
        db,
        a.id,
        oid,
        "bookings/booking.confirmed",
        {
            "booking_id": str(uuid.uuid4()),
            "client_id": client_id,
            "price": {"amount": 80, "currency": "EUR"},
            "starts_at": "2026-12-01T10:00:00+01:00",
            "internal_note": "not mapped, not copied",
        },
    )
    received = await emit(
        db,
        a.id,
        None,
        "messaging/message.received",
        {"message_id": "m1", "thread_id": "t1", "client_id": "c9"},
    )
    bare = await emit(db, a.id, oid, "bookings/booking.cancelled", {})  # every optional key missing
    timer = await emit(db, a.id, oid, "bookings/booking.reminder_due", {"booking_id": "b"})
    await Relay(db).drain()

    (row,) = await analytics_rows(db, confirmed)
    assert (row.name, row.client_id, row.source, row.ids) == (
        "bookings/booking.confirmed",
        client_id,
        "platform",
        1,
    )
    assert (str(row.person_id), str(row.org_id), str(row.tenant_id)) == (a.id, oid, oid)
    assert row.properties["amount"] == 80 and row.properties["currency"] == "EUR"
    assert row.properties["starts_at"] == "2026-12-01T10:00:00+01:00"
    assert "internal_note" not in row.properties and "trace_id" not in row.properties
    (personal,) = await analytics_rows(db, received)
    assert personal.org_id is None and str(personal.tenant_id) == a.id
    assert personal.properties == {"message_id": "m1", "thread_id": "t1"} and personal.client_id == "c9"
    (empty,) = await analytics_rows(db, bare)
    assert empty.properties == {} and empty.client_id is None
    assert await analytics_rows(db, timer) == []
    # The org.created and member events of tenancy itself were recorded too.
    names = {
        r[0]
        for r in await sql(db, "SELECT name FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)", t=oid)
    }
    assert {"platform/org.created", "platform/org_member.added", "bookings/booking.confirmed"} <= names
    # Visible through the API in the org's context, and counted by the rollup.
    trends = await client.post(
        "/v1/analytics/trends", json={"events": ["bookings/booking.confirmed"]}, headers=a.h(org=org)
    )
    assert trends.json()["series"][0]["total"] == 1


async def test_replayed_deliveries_never_double_count(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    event_id = await emit(db, a.id, None, "messaging/message.sent", {"message_id": "m", "thread_id": "t"})
    relay = Relay(db)
    await relay.drain()
    assert await rollup_total(db, a.id, "messaging/message.sent") == 1
    # The relay's at-least-once redelivery (the delivery made pending again) ...
    for _ in range(3):
        async with db.system() as uow:
            await uow.session.execute(
                text(
                    "UPDATE platform.event_deliveries SET status = 'pending', next_attempt_at = now()"
                    " WHERE event_id = :e AND handler = :h"
                ),
                {"e": event_id, "h": HANDLER},
            )
        await relay.drain()
    # ... and the Inngest path delivering the same event again, as a fresh delivery.
    async with db.system() as uow:
        row = (
            await uow.session.execute(
                text("SELECT name, data, created_at FROM platform.outbox WHERE id = :e"), {"e": event_id}
            )
        ).one()
        await uow.session.execute(
            text("DELETE FROM platform.event_deliveries WHERE event_id = :e"), {"e": event_id}
        )
    spec = load_handlers().handlers[HANDLER]
    assert await run_handler_once(db, spec, Event(event_id, row.name, row.data, row.created_at)) is True
    assert await rollup_total(db, a.id, "messaging/message.sent") == 1
    assert len(await analytics_rows(db, event_id)) == 1


async def test_deleting_an_org_purges_its_analytics(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    oid = await org_id(client, a, org)
    r = await client.post("/v1/analytics/events", json={"events": [{"name": "x"}] * 1}, headers=a.h(org=org))
    assert r.json()["accepted"] == 1
    await client.post("/v1/analytics/events", json={"name": "mine"}, headers=a.h())
    await Relay(db).drain()
    assert (await sql(db, "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)", t=oid))[
        0
    ][0] > 0
    # Text rows of a batch folded into the dictionary and coded sets, then a later batch's.
    for cid in ("c9", "c8"):
        r = await client.post(
            "/v1/analytics/events", json={"name": "x", "client_id": cid}, headers=a.h(org=org)
        )
        assert r.json()["accepted"] == 1
        if cid == "c9":
            async with db.system() as uow:
                await compact_client_sets(uow, dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    for table in ("client_sets", "client_ids", "client_id_sets", "client_timelines"):
        left = await sql(
            db, f"SELECT count(*) FROM analytics.{table} WHERE tenant_id = CAST(:t AS uuid)", t=oid
        )
        assert left[0][0] > 0, table
    assert (await client.delete(f"/v1/orgs/{org}", headers=a.h())).status_code == 204
    await Relay(db).drain()
    for table in ("events", *ROLLUP_TABLES):
        left = await sql(
            db, f"SELECT count(*) FROM analytics.{table} WHERE tenant_id = CAST(:t AS uuid)", t=oid
        )
        assert left[0][0] == 0, table
    # The person's own analytics are untouched.
    mine = await sql(
        db,
        "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid) AND name = 'mine'",
        t=a.id,
    )
    assert mine[0][0] == 1
