"""The installation gate answers from what the context's binding read, in that transaction only
(`UnitOfWork.available_to`): no statement of its own there, a fresh read in the next transaction
(an uninstall counts at once), a read when the binding did not ask; one list answers for tools
and actions because a component's toolset is its slug."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from core.db import asyncpg_dsn, start_statement_count
from core.errors import PermissionDenied
from core.opener import open_context
from core.registry.gate import require_installed
from core.uow import Database
from tests.conftest import signup
from tests.support.registry import install, uninstall


async def test_the_gate_answers_from_the_binding_only_in_the_transaction_that_read_it(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    await install(client, a, "identity", "bookings")
    async with db.uow() as uow:
        ctx = await open_context(uow, a.token, gates=True)
        stats = start_statement_count()
        await require_installed(ctx, uow, component="identity")
        await require_installed(ctx, uow, toolset="bookings")
        assert stats.count == 0
        async with uow.released():
            # Committed meanwhile by another request: the next transaction must see it.
            await uninstall(client, a, "identity")
        stats = start_statement_count()
        with pytest.raises(PermissionDenied) as refused:
            await require_installed(ctx, uow, component="identity")
        assert refused.value.code == "component_not_installed"
        assert stats.count == 1
    # Bound without asking for them: the gate reads, and answers the same.
    async with db.uow() as uow:
        ctx = await open_context(uow, a.token)
        stats = start_statement_count()
        await require_installed(ctx, uow, toolset="bookings")
        assert stats.count == 1
        with pytest.raises(PermissionDenied):
            await require_installed(ctx, uow, component="identity")


async def test_what_one_context_read_never_opens_the_gate_for_another(
    client: httpx.AsyncClient, db: Database
) -> None:
    a, b = await signup(client), await signup(client)
    await install(client, a, "identity")
    async with db.uow() as uow:
        theirs = await open_context(uow, a.token, gates=True)
        # The same unit of work, rebound to another caller by the statement that bound them.
        mine = await open_context(uow, b.token, gates=True)
        with pytest.raises(PermissionDenied):
            await require_installed(mine, uow, component="identity")
        # The earlier context is no longer the one bound: its list is gone; the gate reads, as
        # the caller bound now (row-level security), and refuses.
        stats = start_statement_count()
        with pytest.raises(PermissionDenied):
            await require_installed(theirs, uow, component="identity")
        assert stats.count == 1


async def test_a_components_toolset_is_its_slug_or_none(db: Database) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(db.settings.database_url or ""))
    try:
        tx = conn.transaction()
        await tx.start()
        try:  # undone below: the test database stays as the start-up sync wrote it
            await conn.execute("UPDATE registry.components SET toolset = NULL WHERE slug = 'bookings'")
            with pytest.raises(asyncpg.CheckViolationError) as refused:
                await conn.execute(
                    "UPDATE registry.components SET toolset = 'identity' WHERE slug = 'bookings'"
                )
            assert refused.value.constraint_name == "ck_components_toolset_is_slug"
        finally:
            await tx.rollback()
    finally:
        await conn.close()
