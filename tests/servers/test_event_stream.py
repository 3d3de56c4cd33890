"""GET /v1/events/stream: the context's live events, and nobody else's."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.uow import Database
from servers.app import create_app
from tests.conftest import join_org, make_org, signup
from tests.support.messaging import api_key, inbound, messaging_database, messaging_db
from tests.support.serving import app_client, free_port, serving


@pytest.fixture(scope="module")
async def sdb(db: Database) -> AsyncIterator[Database]:
    # Short connections so the in-process transport (which buffers) returns quickly.
    async with messaging_database(db, events_stream_seconds=0.5, events_stream_poll_seconds=0.05) as database:
        yield database


@pytest.fixture
async def sc(sdb: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(sdb) as c:
        yield c


def frames(body: str) -> list[dict[str, Any]]:
    out = []
    for block in body.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "event" in fields:
            fields["data"] = json.loads(fields["data"])
            out.append(fields)
    return out


async def stream(c: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = await c.get("/v1/events/stream", params=params, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream")
    got = frames(r.text)
    assert got[0]["event"] == "ready" and got[-1]["event"] == "end"
    return got


async def test_a_context_streams_its_own_events_and_never_another_tenants(sc: httpx.AsyncClient) -> None:
    ada = await signup(sc, "ada")
    org = await make_org(sc, ada)
    bob = await signup(sc, "bob")
    start = (await stream(sc, ada.h(org=org)))[0]["data"]["cursor"]

    org_peer = {"Authorization": f"Bearer {await api_key(sc, ada, ['messaging:ingest'], org=org)}"}
    mine = await inbound(sc, org_peer, external_id="<org-1>", body="<b>hi</b> from the org inbox")
    ada_personal = await inbound(sc, ada.h(), external_id="<ada-1>", body="personal")
    bobs = await inbound(sc, bob.h(), external_id="<bob-1>", body="bob's")

    org_events = await stream(sc, ada.h(org=org), after=start)
    received = [f for f in org_events if f["event"] == "messaging/message.received"]
    assert [f["data"]["data"]["message_id"] for f in received] == [mine["results"][0]["message_id"]]
    thread_ids = {f["data"]["data"].get("thread_id") for f in org_events[1:-1]}
    assert thread_ids == {mine["results"][0]["thread_id"]}
    assert all(f["id"] == str(f["data"]["seq"]) for f in org_events[1:-1])
    assert "hi" not in json.dumps(org_events)  # ids only, never the client's text

    personal = await stream(sc, ada.h(), after=start)
    assert {f["data"]["data"].get("thread_id") for f in personal[1:-1]} == {
        ada_personal["results"][0]["thread_id"]
    }
    bob_events = await stream(sc, bob.h(), after=start)
    assert {f["data"]["data"].get("thread_id") for f in bob_events[1:-1]} == {bobs["results"][0]["thread_id"]}

    # The stream continues where the last one ended: nothing is replayed.
    end = org_events[-1]["data"]["cursor"]
    assert [f["event"] for f in await stream(sc, ada.h(org=org), after=end)] == ["ready", "end"]
    r = await sc.get("/v1/events/stream", headers={**ada.h(org=org), "Last-Event-ID": str(start)})
    assert [f["data"]["seq"] for f in frames(r.text)[1:-1]] == [f["data"]["seq"] for f in org_events[1:-1]]

    # A kind filter narrows it.
    drafts_only = await stream(sc, ada.h(org=org), after=start, kind="messaging/draft.*")
    assert [f["event"] for f in drafts_only] == ["ready", "end"]


async def test_the_stream_is_authenticated_scoped_and_membership_checked(sc: httpx.AsyncClient) -> None:
    ada = await signup(sc, "ada")
    org = await make_org(sc, ada)
    bob = await signup(sc, "bob")
    assert (await sc.get("/v1/events/stream")).status_code == 401
    r = await sc.get("/v1/events/stream", headers=bob.h(org=org))
    assert r.status_code == 403 and r.json()["code"] == "not_a_member"
    ingest_only = await api_key(sc, ada, ["messaging:ingest"], org=org)
    r = await sc.get("/v1/events/stream", headers={"Authorization": f"Bearer {ingest_only}"})
    assert r.status_code == 403 and r.json()["code"] == "missing_scope"
    r = await sc.get("/v1/events/stream", params={"kind": "billing/*"}, headers=ada.h())
    assert r.status_code == 422 and r.json()["code"] == "unknown_event_kind"


async def test_a_member_removed_mid_stream_stops_receiving_at_once(db: Database) -> None:
    """Over a real socket: the stream re-checks membership at every poll."""
    database = messaging_db(db, events_stream_seconds=30.0, events_stream_poll_seconds=0.05)
    port = free_port()
    app = create_app(database.settings, db=database, run_relay=False)
    try:
        async with serving(app, port) as base, httpx.AsyncClient(base_url=base, timeout=10) as c:
            ada = await signup(c, "ada")
            org = await make_org(c, ada)
            cy = await signup(c, "cy")
            await join_org(c, org, ada, cy)
            peer = {"Authorization": f"Bearer {await api_key(c, ada, ['messaging:ingest'], org=org)}"}
            seen: list[dict[str, Any]] = []
            async with c.stream("GET", "/v1/events/stream", headers=cy.h(org=org)) as s:
                buffer = ""
                async for chunk in s.aiter_text():
                    buffer += chunk
                    while "\n\n" in buffer:
                        block, buffer = buffer.split("\n\n", 1)
                        seen += frames(block + "\n\n")
                        if seen[-1]["event"] == "ready":
                            await inbound(c, peer, external_id="<before>", body="while a member")
                        elif seen[-1]["event"] == "messaging/message.received":
                            gone = await c.delete(f"/v1/orgs/{org}/members/{cy.slug}", headers=ada.h())
                            assert gone.status_code == 204, gone.text
                            await inbound(c, peer, external_id="<after>", body="after removal")
            names = [f["event"] for f in seen]
            assert names[0] == "ready" and names[-1] == "error", names
            assert names.count("messaging/message.received") == 1
            assert seen[-1]["data"]["code"] == "not_a_member"
    finally:
        await database.dispose()
