"""The unit of work runs on a pooled connection and makes an ORM session only for a service that
uses the ORM, on that connection and in that transaction (`core.uow.UnitOfWork.session`). These
check that a request using no ORM makes none, that the session and the connection's own
statements share one transaction both ways (what one wrote the other reads; a rollback through
either undoes both), and that the connection goes back to its pool when the unit ends or hands
it back (`released`), errors translated as before, on SQLAlchemy's connection and on the driver's
(`UnitOfWork.fetch`) alike."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from core.db import asyncpg_dsn
from core.errors import Conflict, DomainError, Unavailable
from core.opener import open_context
from core.tenancy.me import whoami
from core.tenancy.models import Person
from core.uow import Database
from tests.conftest import signup
from tests.support.request_path import MCP_POST_HEADERS as MCP_HEADERS
from tests.support.request_path import count_sessions

WHOAMI = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
_NAME = text("UPDATE platform.persons SET display_name = :name WHERE id = :id")
_READ_NAME = text("SELECT display_name FROM platform.persons WHERE id = :id")
_TXID = text("SELECT txid_current()")


async def test_a_request_that_uses_no_orm_makes_no_session(
    own_client: httpx.AsyncClient, own_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(own_client)
    made = count_sessions(own_db, monkeypatch)
    me = await own_client.get("/v1/me", headers=a.h())
    assert me.status_code == 200, me.text
    mcp = await own_client.post("/mcp", json=WHOAMI, headers={**MCP_HEADERS, **a.h()})
    assert mcp.status_code == 200 and mcp.json()["result"]["isError"] is False, mcp.text
    assert made[0] == 0
    # A service that uses the ORM gets its session (the counter does count).
    renamed = await own_client.patch("/v1/me", json={"display_name": "Orm User"}, headers=a.h())
    assert renamed.status_code == 200, renamed.text
    assert made[0] == 1
    assert (await own_client.get("/v1/me", headers=a.h())).json()["person"]["display_name"] == "Orm User"
    assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_the_orm_after_a_connection_statement_works_in_the_same_transaction(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a = await signup(own_client)
    pid = uuid.UUID(a.id)
    async with own_db.uow() as uow:
        ctx = await open_context(uow, a.token, None)
        txid = (await uow.rows(_TXID, {})).scalar_one()
        await uow.rows(_NAME, {"name": "Written On The Connection", "id": ctx.person_id})
        person = await uow.session.get(Person, pid)
        assert person is not None and person.display_name == "Written On The Connection"
        assert (await uow.session.execute(_TXID)).scalar_one() == txid
        # And back: the ORM's change is flushed before a statement on the connection reads.
        person.display_name = "Changed Through The Orm"
        assert (await uow.rows(_READ_NAME, {"id": pid})).scalar_one() == "Changed Through The Orm"
        assert (await uow.rows(_TXID, {})).scalar_one() == txid
    me = await own_client.get("/v1/me", headers=a.h())
    assert me.json()["person"]["display_name"] == "Changed Through The Orm"


async def test_an_error_rolls_back_the_connections_and_the_orms_writes(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a = await signup(own_client)
    pid = uuid.UUID(a.id)
    before = (await own_client.get("/v1/me", headers=a.h())).json()["person"]["display_name"]
    with pytest.raises(RuntimeError, match="boom"):
        async with own_db.uow() as uow:
            await open_context(uow, a.token, None)
            await uow.rows(_NAME, {"name": "Not Kept", "id": pid})
            person = await uow.session.get(Person, pid)
            assert person is not None
            person.email = f"not-kept-{uuid.uuid4().hex[:8]}@example.com"
            await uow.session.flush()
            uow.emit("platform/person.renamed", {"person_id": pid})
            raise RuntimeError("boom")
    me = (await own_client.get("/v1/me", headers=a.h())).json()["person"]
    assert me["display_name"] == before and me["email"] == a.email
    assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_session_made_after_connection_statements_rolls_them_back(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    """What a failed relay handler does (`core.events.run_first_in_transaction`): its rollback
    through the session undoes what ran on the connection before the session existed."""
    a = await signup(own_client)
    pid = uuid.UUID(a.id)
    async with own_db.uow() as uow:
        await open_context(uow, a.token, None)
        await uow.rows(_NAME, {"name": "Rolled Back", "id": pid})
        await uow.session.rollback()
        # The rollback ended the transaction and its settings: bind the context again.
        await open_context(uow, a.token, None)
        assert (await uow.rows(_READ_NAME, {"id": pid})).scalar_one() != "Rolled Back"
        # A session that committed and then sees only connection statements still owns them.
        await uow.commit()
        await open_context(uow, a.token, None)
        await uow.rows(_NAME, {"name": "Rolled Back Too", "id": pid})
        await uow.session.rollback()
    assert (await own_client.get("/v1/me", headers=a.h())).json()["person"]["display_name"] not in (
        "Rolled Back",
        "Rolled Back Too",
    )


async def test_released_hands_the_connection_back_and_rebinds_after(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a = await signup(own_client)
    pid = uuid.UUID(a.id)
    pool: Any = own_db.engine.pool
    async with own_db.uow() as uow:
        await open_context(uow, a.token, None)
        person = await uow.session.get(Person, pid)
        assert person is not None
        person.display_name = "Before The Call"
        assert pool.checkedout() == 1
        async with uow.released():
            assert pool.checkedout() == 0
        # Committed before; bound again after, so row-level security shows the person.
        assert (await uow.rows(_READ_NAME, {"id": pid})).scalar_one() == "Before The Call"
        again = await uow.session.get(Person, pid)
        assert again is not None and again is not person  # re-read, not the old identity map's
        again.display_name = "After The Call"
    assert pool.checkedout() == 0
    assert (await own_client.get("/v1/me", headers=a.h())).json()["person"][
        "display_name"
    ] == "After The Call"


async def test_a_unit_that_turns_system_commits_its_callers_part_on_its_own_pool(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a = await signup(own_client)
    pid = uuid.UUID(a.id)
    async with own_db.uow() as uow:
        await open_context(uow, a.token, None)
        await uow.rows(_NAME, {"name": "As The Caller", "id": pid})
        await uow.act_as_system()
        assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        role = (await uow.rows(text("SELECT current_user"), {})).scalar_one()
        assert role == own_db.settings.db_system_role
        assert (await uow.session.execute(_READ_NAME, {"id": pid})).scalar_one() == "As The Caller"
    assert own_db.system_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_constraint_broken_on_the_connection_is_the_mapped_conflict(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a, b = await signup(own_client), await signup(own_client)
    with pytest.raises(Conflict) as refused:
        async with own_db.system() as uow:
            await uow.rows(
                text("UPDATE platform.persons SET slug = :slug WHERE id = :id"), {"slug": b.slug, "id": a.id}
            )
    assert refused.value.code == "slug_taken"
    assert own_db.system_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_statement_on_the_driver_is_in_the_units_transaction(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    """`fetch` begins the transaction when it comes first (the context's resolution does), and
    what it writes commits or rolls back with the unit."""
    a = await signup(own_client)
    pid = uuid.UUID(a.id)
    with pytest.raises(RuntimeError, match="boom"):
        async with own_db.uow() as uow:
            await open_context(uow, a.token, None)  # the unit's first statement, on the driver
            txid = (await uow.fetch("SELECT txid_current()"))[0][0]
            assert (await uow.rows(_TXID, {})).scalar_one() == txid
            written = await uow.fetch(
                "UPDATE platform.persons SET display_name = $1 WHERE id = $2 RETURNING id", "Not Kept", pid
            )
            assert [r[0] for r in written] == [pid]
            assert (await uow.session.get(Person, pid)).display_name == "Not Kept"  # type: ignore[union-attr]
            raise RuntimeError("boom")
    assert (await own_client.get("/v1/me", headers=a.h())).json()["person"]["display_name"] != "Not Kept"
    async with own_db.uow() as uow:
        await open_context(uow, a.token, None)
        await uow.fetch("UPDATE platform.persons SET display_name = $1 WHERE id = $2", "Kept", pid)
    assert (await own_client.get("/v1/me", headers=a.h())).json()["person"]["display_name"] == "Kept"


async def test_a_constraint_broken_on_the_driver_is_the_mapped_conflict(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a, b = await signup(own_client), await signup(own_client)
    with pytest.raises(Conflict) as refused:
        async with own_db.system() as uow:
            await uow.fetch("UPDATE platform.persons SET slug = $1 WHERE id = $2", b.slug, uuid.UUID(a.id))
    assert refused.value.code == "slug_taken"
    assert own_db.system_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def _backend_gone(database: Database, pid: int) -> bool:
    admin = await asyncpg.connect(asyncpg_dsn(database.settings.database_url or ""))
    try:
        for _ in range(50):
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await admin.close()


async def test_a_statement_on_the_driver_cut_short_never_returns_its_connection_to_the_pool(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    a = await signup(own_client)
    with pytest.raises(asyncio.CancelledError):
        async with own_db.uow() as uow:
            await open_context(uow, a.token, None)
            pid = (await uow.fetch("SELECT pg_backend_pid()"))[0][0]
            slow = asyncio.ensure_future(uow.fetch("SELECT pg_sleep(30)"))
            await asyncio.sleep(0.3)
            slow.cancel()
            await slow
    assert await _backend_gone(own_db, pid)  # invalidated, as SQLAlchemy does its own
    assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert (await own_client.get("/v1/me", headers=a.h())).status_code == 200


@pytest.mark.parametrize("on", ["connection", "driver"])
async def test_a_connection_lost_mid_unit_is_database_unavailable_and_not_reused(
    own_client: httpx.AsyncClient, own_db: Database, on: str
) -> None:
    a = await signup(own_client)
    with pytest.raises(DomainError) as lost:
        async with own_db.uow() as uow:
            ctx = await open_context(uow, a.token, None)
            pid = (await uow.rows(text("SELECT pg_backend_pid()"), {})).scalar_one()
            admin = await asyncpg.connect(asyncpg_dsn(own_db.settings.database_url or ""))
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            if on == "driver":
                await whoami(ctx, uow)
            else:
                await uow.rows(_READ_NAME, {"id": a.id})
    assert isinstance(lost.value, Unavailable) and lost.value.code == "database_unavailable"
    assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    me = await own_client.get("/v1/me", headers=a.h())
    assert me.status_code == 200, me.text
