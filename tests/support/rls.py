"""Raw SQL in a chosen context, as the policies see it: a "user" context signed as
`platform.resolve_context` signs it (the test borrows the owner's key, which the app role can
never read), "system" and "service" on the system role's own pool (the only role whose claim
to them counts), anything else set by hand on the app role's connection, as injected SQL
would — and believed by nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from core.db import asyncpg_url
from core.uow import Database

_SET = (
    "SELECT set_config('app.mode', :m, true), set_config('app.person_id', :p, true),"
    " set_config('app.org_id', :o, true), set_config('app.ctx_sig', :s, true)"
)


async def raw_as(
    db: Database,
    mode: str,
    person: str | None,
    org: str | None,
    sql: str,
    params: dict[str, Any] | None = None,
) -> list[Any]:
    engine = db.system_engine if mode in ("system", "service") else db.engine
    async with engine.connect() as conn, conn.begin():
        sig = await signature(db, conn, person or "", org or "") if mode == "user" else ""
        await conn.execute(text(_SET), {"m": mode, "p": person or "", "o": org or "", "s": sig})
        return list((await conn.execute(text(sql), params or {})).all())


async def signature(db: Database, conn: AsyncConnection, person: str, org: str) -> str:
    """What `platform_private.mac` gives for this connection's backend and transaction."""
    backend = (await conn.execute(text("SELECT pg_backend_pid(), extract(epoch FROM now())::text"))).one()
    owner = create_async_engine(asyncpg_url(db.settings.database_url or ""))
    try:
        async with owner.connect() as oc:
            msg = f"user|{person}|{org}|{backend[0]}|{backend[1]}"
            return str((await oc.execute(text("SELECT platform_private.mac(:m)"), {"m": msg})).scalar_one())
    finally:
        await owner.dispose()
