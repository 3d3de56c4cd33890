"""Every core operation that changes what a caller may see emits one `registry/tools.changed`
naming the affected persons and orgs, whichever door it came through."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select

from core.admin import set_platform_admin
from core.outbox import Event, outbox_table
from core.registry.changes import CHANNEL, TOOLS_CHANGED, Caller, ToolsChange, affected
from core.registry.handlers import broadcast_tools_changed
from core.uow import Database
from tests.conftest import Account, join_org, make_org, signup


class Outbox:
    """Reads the tools-changed events written since it was made."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.mark = 0

    async def start(self) -> Outbox:
        async with self.db.system() as uow:
            last = (
                await uow.session.execute(select(outbox_table.c.seq).order_by(outbox_table.c.seq.desc()))
            ).first()
        self.mark = last[0] if last else 0
        return self

    async def taken(self) -> list[dict[str, Any]]:
        """The events since the last call, oldest first."""
        async with self.db.system() as uow:
            rows = (
                await uow.session.execute(
                    select(outbox_table.c.seq, outbox_table.c.data)
                    .where(outbox_table.c.name == TOOLS_CHANGED, outbox_table.c.seq > self.mark)
                    .order_by(outbox_table.c.seq)
                )
            ).all()
        if rows:
            self.mark = rows[-1][0]
        return [r[1] for r in rows]

    async def one(self, reason: str, *, persons: list[str] = (), orgs: list[str] = ()) -> None:  # type: ignore[assignment]
        found = await self.taken()
        assert [(e["reason"], e["person_ids"], e["org_ids"]) for e in found] == [
            (reason, sorted(persons), sorted(orgs))
        ], found


async def org_id(client: httpx.AsyncClient, owner: Account, org: str) -> str:
    r = await client.get(f"/v1/orgs/{org}", headers=owner.h())
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


async def test_installations_emit_for_their_context(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    oid = await org_id(client, a, org)
    out = await Outbox(db).start()
    r = await client.post("/v1/installations", json={"component": "bookings"}, headers=a.h())
    assert r.status_code == 201, r.text
    await out.one("installation.created", persons=[a.id])
    again = await client.post("/v1/installations", json={"component": "bookings"}, headers=a.h())
    assert again.status_code == 200
    assert await out.taken() == []  # nothing installed, nothing changed
    r = await client.patch("/v1/installations/bookings", json={"config": {"tz": "UTC"}}, headers=a.h())
    assert r.status_code == 200, r.text
    await out.one("installation.updated", persons=[a.id])
    r = await client.delete("/v1/installations/bookings", headers=a.h())
    assert r.status_code == 204, r.text
    await out.one("installation.deleted", persons=[a.id])
    r = await client.post("/v1/installations", json={"component": "messaging"}, headers=a.h(org))
    assert r.status_code == 201, r.text
    await out.one("installation.created", orgs=[oid])
    refused = await client.delete("/v1/installations/bookings", headers=a.h(org))
    assert refused.status_code == 404
    assert await out.taken() == []


async def test_membership_changes_emit_for_the_member(client: httpx.AsyncClient, db: Database) -> None:
    a, b, c = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    oid = await org_id(client, a, org)
    out = await Outbox(db).start()
    await join_org(client, org, a, b)
    await out.one("org_member.added", persons=[b.id])
    r = await client.patch(f"/v1/orgs/{org}/members/{b.slug}", json={"role": "admin"}, headers=a.h(org))
    assert r.status_code == 200, r.text
    await out.one("org_member.role_changed", persons=[b.id])
    r = await client.patch(f"/v1/orgs/{org}/members/{b.slug}", json={"role": "admin"}, headers=a.h(org))
    assert r.status_code == 200 and await out.taken() == []  # the same role: no change
    r = await client.post(f"/v1/orgs/{org}/transfer", json={"person": b.slug}, headers=a.h(org))
    assert r.status_code == 200 and await out.taken() == []  # an offer changes nobody's tools
    r = await client.post(f"/v1/orgs/{org}/transfer/accept", headers=b.h(org))
    assert r.status_code == 200, r.text
    await out.one("org.ownership_transferred", persons=[a.id, b.id])
    r = await client.post(f"/v1/orgs/{org}/invitations", json={"person": c.slug}, headers=b.h(org))
    assert r.status_code == 201, r.text
    r = await client.post(f"/v1/invitations/{r.json()['id']}/accept", headers=c.h())
    assert r.status_code == 200, r.text
    await out.one("org_member.added", persons=[c.id])
    r = await client.delete(f"/v1/orgs/{org}/members/{c.slug}", headers=b.h(org))
    assert r.status_code == 204, r.text
    await out.one("org_member.removed", persons=[c.id])
    r = await client.delete(f"/v1/orgs/{org}", headers=b.h(org))
    assert r.status_code == 204, r.text
    await out.one("org.deleted", persons=[a.id, b.id], orgs=[oid])


async def test_admin_changes_emit_for_the_person(client: httpx.AsyncClient, db: Database) -> None:
    admin, target = await signup(client), await signup(client)
    out = await Outbox(db).start()
    promoted = await set_platform_admin(db, admin.slug, True)
    assert promoted.changed
    await out.one("person.promoted", persons=[admin.id])
    r = await client.post(
        f"/v1/admin/persons/{target.slug}/suspend", json={"reason": "testing changes"}, headers=admin.h()
    )
    assert r.status_code == 200, r.text
    await out.one("person.suspended", persons=[target.id])
    r = await client.post(
        f"/v1/admin/persons/{target.slug}/reactivate", json={"reason": "tested"}, headers=admin.h()
    )
    assert r.status_code == 200, r.text
    await out.one("person.reactivated", persons=[target.id])
    await set_platform_admin(db, admin.slug, False)
    await out.one("person.demoted", persons=[admin.id])


async def test_affected_is_the_persons_the_bound_and_the_members(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b, outsider = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    oid = uuid.UUID(await org_id(client, a, org))
    await join_org(client, org, a, b)
    pa, pb, po = (uuid.UUID(x.id) for x in (a, b, outsider))
    bound_elsewhere = Caller(pb, bound_org=uuid.uuid4())
    callers = {Caller(pa), Caller(pb), Caller(po), bound_elsewhere, Caller(po, bound_org=oid)}
    async with db.system() as uow:
        org_change = ToolsChange("e", frozenset(), frozenset({oid}))
        assert await affected(uow, org_change, callers) == {Caller(pa), Caller(pb), Caller(po, bound_org=oid)}
        person_change = ToolsChange("e", frozenset({po}), frozenset())
        assert await affected(uow, person_change, callers) == {Caller(po), Caller(po, bound_org=oid)}
        everyone = ToolsChange("e", frozenset(), frozenset(), everyone=True)
        assert await affected(uow, everyone, callers) == callers


def test_a_notice_carries_ids_and_falls_back_to_everyone_when_too_long() -> None:
    persons = frozenset(uuid.uuid4() for _ in range(3))
    change = ToolsChange("ev", persons, frozenset({uuid.uuid4()}))
    assert ToolsChange.from_notice(change.to_notice()) == change
    crowd = ToolsChange("ev", frozenset(uuid.uuid4() for _ in range(400)), frozenset())
    notice = crowd.to_notice()
    assert len(notice.encode()) < 8000
    assert ToolsChange.from_notice(notice) == ToolsChange("ev", frozenset(), frozenset(), everyone=True)
    assert ToolsChange.from_notice("not json") is None and ToolsChange.from_notice("[1]") is None


async def test_the_handler_notifies_every_listening_connection(db: Database) -> None:
    import asyncio

    import asyncpg

    from core.db import asyncpg_dsn
    from core.uow import app_database_url

    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(asyncpg_dsn(app_database_url(db.settings)))
    try:
        await conn.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[-1]))
        person = uuid.uuid4()
        event = Event(uuid.uuid4(), TOOLS_CHANGED, {"person_ids": [str(person)], "org_ids": []}, None)  # type: ignore[arg-type]
        async with db.system() as uow:
            await broadcast_tools_changed(event, uow)
        notice = ToolsChange.from_notice(await asyncio.wait_for(heard.get(), 5))
        assert notice == ToolsChange(str(event.id), frozenset({person}), frozenset())
    finally:
        await conn.close()
