"""Helpers for the analytics tests: acting as a caller, writing events at chosen times (platform
names included), and running the naive SQL the results are checked against."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text

from core.analytics import partitions, store
from core.analytics.client_sets import compact_client_sets
from core.analytics.parsing import Row
from core.context import TenantContext
from core.opener import open_context
from core.uow import Database, UnitOfWork
from tests.conftest import Account

UTC = dt.UTC


@asynccontextmanager
async def caller(
    db: Database, who: Account, org: str | None = None
) -> AsyncIterator[tuple[TenantContext, UnitOfWork]]:
    async with db.uow() as uow:
        ctx = await open_context(uow, who.token, org or "personal")
        yield ctx, uow


Ev = tuple[str, dt.datetime, str | None, dict[str, Any]]


async def put(
    db: Database, person: str | uuid.UUID, org: str | uuid.UUID | None, events: Sequence[Ev]
) -> list[uuid.UUID]:
    """Store events (any name, any time) for a member of a context through the real insert
    path; returns their ids."""
    pid = uuid.UUID(str(person))
    oid = uuid.UUID(str(org)) if org else None
    rows = [
        Row(i, str(uuid.uuid4()), ts, name, client, "test", json.dumps(props))
        for i, (name, ts, client, props) in enumerate(events)
    ]
    if rows:
        await partitions.ensure_partitions(db, min(r.ts for r in rows), max(r.ts for r in rows))
    async with db.service(pid, oid) as uow:
        stored = await store.insert(uow, rows, person_id=pid, org_id=oid)
    assert stored.accepted == len(rows)
    return [uuid.UUID(r.id) for r in rows]


async def sql(db: Database, query: str, **params: Any) -> list[Any]:
    """Naive SQL over everything (system mode): the reference the features are checked against."""
    async with db.system() as uow:
        return list((await uow.session.execute(text(query), params)).all())


async def org_id(client: Any, who: Account, slug: str) -> str:
    return str((await client.get(f"/v1/orgs/{slug}", headers=who.h())).json()["id"])


async def fold(db: Database, before: dt.datetime) -> None:
    """Run the compaction job's fold over every bucket that started before `before`."""
    async with db.system() as uow:
        await compact_client_sets(uow, before)


async def tenant_rows(db: Database, table: str, tenant: str) -> int:
    """How many rows of `analytics.<table>` belong to `tenant` (system mode)."""
    rows = await sql(
        db, f"SELECT count(*) FROM analytics.{table} WHERE tenant_id = CAST(:t AS uuid)", t=tenant
    )
    return int(rows[0][0])
