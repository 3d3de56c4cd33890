"""A retried key whose record is purged between the claim that met it and the read that follows
(each statement reads what is committed when it starts) is claimed afresh: the request runs,
never a 500."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel

from core.idempotency import idempotent
from core.opener import open_context
from core.uow import Database, UnitOfWork
from tests.conftest import signup
from tests.support.sql import system_sql


class Counted(BaseModel):
    run: int


async def test_a_key_purged_between_claim_and_read_is_claimed_again(
    client: httpx.AsyncClient, db: Database, monkeypatch: Any
) -> None:
    account = await signup(client, "idp")
    runs = 0

    async def work() -> Counted:
        nonlocal runs
        runs += 1
        return Counted(run=runs)

    async def once() -> Counted:
        async with db.uow() as uow:
            ctx = await open_context(uow, account.token)
            return await idempotent(ctx, uow, "purged-key", "test.purge", {"a": 1}, Counted, work)

    assert await once() == Counted(run=1)
    assert await once() == Counted(run=1)  # a retry: the stored result, the work not run again

    fetch = UnitOfWork.fetch
    purged: list[str] = []

    async def purging_after_the_claim(self: UnitOfWork, sql: str, *args: Any) -> list[Any]:
        rows = await fetch(self, sql, *args)
        if sql.startswith("INSERT INTO platform.idempotency_keys") and not rows and not purged:
            # The expiry sweep, committed between the claim and the read.
            await system_sql(db, "DELETE FROM platform.idempotency_keys WHERE key = 'purged-key'")
            purged.append(sql)
        return rows

    monkeypatch.setattr(UnitOfWork, "fetch", purging_after_the_claim)
    assert await once() == Counted(run=2)
    assert purged and runs == 2
    monkeypatch.undo()
    assert await once() == Counted(run=2)  # the fresh claim's result is the one kept
