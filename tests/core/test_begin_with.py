"""A service or system unit of work opens its transaction with BEGIN and its settings statement
in one round trip (`core.db.begin_with`, values written in as literals by
`core.uow._settings_literal` only when they have the shape the server makes them in). These pin
what that takes from asyncpg's and SQLAlchemy's private state: the transaction commits, rolls
back and fails as one SQLAlchemy began, a lost connection is `database_unavailable`, the
statement counter still counts the settings statement, and any value of another shape goes as a
parameter."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import asyncpg_dsn, begin_with, start_statement_count
from core.errors import DomainError, Unavailable
from core.uow import _SETTINGS_SQL, Database, Mode, _settings_literal
from tests.support.statements import record_simple_queries

_SETTINGS = text(
    "SELECT current_setting('app.mode', true) AS mode, current_setting('app.person_id', true) AS person,"
    " current_setting('app.org_id', true) AS org, current_setting('app.trace_id', true) AS trace"
)
_SCRATCH = "CREATE TABLE IF NOT EXISTS public.begin_with_scratch (marker text PRIMARY KEY)"
_WRITE = text("INSERT INTO public.begin_with_scratch (marker) VALUES (:m)")
_READ = text("SELECT count(*) FROM public.begin_with_scratch WHERE marker = :m")


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every simple query asyncpg sends (BEGIN, COMMIT, ROLLBACK and ours), in order."""
    return record_simple_queries(monkeypatch)


async def _admin(db: Database) -> asyncpg.Connection:
    return await asyncpg.connect(asyncpg_dsn(db.settings.database_url or ""))


async def _scratch(db: Database) -> None:
    admin = await _admin(db)
    try:
        await admin.execute(_SCRATCH)
        await admin.execute(f"GRANT ALL ON public.begin_with_scratch TO {db.settings.db_system_role}")
    finally:
        await admin.close()


async def _count(db: Database, marker: str) -> int:
    async with db.system() as uow:
        return int((await uow.rows(_READ, {"m": marker})).scalar_one())


async def test_a_system_unit_opens_with_begin_and_its_settings_in_one_round_trip(
    own_db: Database, sent: list[str]
) -> None:
    person, org, trace = uuid.uuid4(), uuid.uuid4(), uuid.uuid4().hex
    async with own_db.system():  # the pool's first connection, and SQLAlchemy's first look at it
        pass
    sent.clear()
    stats = start_statement_count()
    async with own_db.service(person, org, trace_id=trace) as uow:
        opened = list(sent)
        settings = (await uow.rows(_SETTINGS, {})).one()
    assert opened == [
        f"BEGIN;SET LOCAL app.mode = 'service';SET LOCAL app.person_id = '{person}';"
        f"SET LOCAL app.org_id = '{org}';SET LOCAL app.trace_id = '{trace}'"
    ]
    assert tuple(settings) == ("service", str(person), str(org), trace)
    # The settings statement counts, as it did on its own (BEGIN never did); the read too.
    assert stats.count == 2
    assert sent[1:] == ["COMMIT;"]


async def test_it_commits_and_rolls_back_as_a_transaction_sqlalchemy_began(own_db: Database) -> None:
    await _scratch(own_db)
    kept, undone = uuid.uuid4().hex, uuid.uuid4().hex
    async with own_db.system() as uow:
        await uow.rows(_WRITE, {"m": kept})
    with pytest.raises(RuntimeError, match="boom"):
        async with own_db.system() as uow:
            await uow.rows(_WRITE, {"m": undone})
            raise RuntimeError("boom")
    assert (await _count(own_db, kept), await _count(own_db, undone)) == (1, 0)
    # Through the ORM session too (its commit and rollback are the connection's).
    orm_kept, orm_undone = uuid.uuid4().hex, uuid.uuid4().hex
    async with own_db.system() as uow:
        await uow.session.execute(_WRITE, {"m": orm_kept})
    with pytest.raises(RuntimeError, match="boom"):
        async with own_db.system() as uow:
            await uow.session.execute(_WRITE, {"m": orm_undone})
            raise RuntimeError("boom")
    assert (await _count(own_db, orm_kept), await _count(own_db, orm_undone)) == (1, 0)
    assert own_db.system_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_failing_opening_statement_leaves_a_transaction_that_rolls_back_cleanly(
    own_db: Database,
) -> None:
    async with own_db.system_engine.connect() as conn:
        with pytest.raises(DBAPIError, match="division by zero"):
            await begin_with(conn, "SELECT 1/0", "SELECT 1/0")
        # BEGIN ran, the statement failed: SQLAlchemy's rollback ends that transaction.
        await conn.rollback()
        literal = _settings_literal(Mode.SYSTEM, None, None, "a" * 32)
        assert literal is not None
        await begin_with(conn, literal, _SETTINGS_SQL, "system", "", "", "a" * 32)
        assert tuple((await conn.execute(_SETTINGS)).one()) == ("system", "", "", "a" * 32)
        await conn.commit()
        raw: Any = (await conn.get_raw_connection()).driver_connection
        assert not raw.is_in_transaction() and raw._top_xact is None


async def test_an_error_after_it_is_the_mapped_error_and_the_pool_stays_clean(own_db: Database) -> None:
    await _scratch(own_db)
    marker = uuid.uuid4().hex
    async with own_db.system() as uow:
        await uow.rows(_WRITE, {"m": marker})
    with pytest.raises(DomainError) as duplicate:
        async with own_db.system() as uow:
            await uow.rows(_WRITE, {"m": marker})
    assert duplicate.value.code == "conflict"
    for _ in range(3):  # every pooled connection starts its next unit afresh
        async with own_db.system() as uow:
            assert (await uow.rows(_SETTINGS, {})).one().mode == "system"


async def test_a_connection_lost_before_it_is_database_unavailable_and_not_reused(own_db: Database) -> None:
    with pytest.raises(DomainError) as lost:
        async with own_db.system(settings_deferred=True) as uow:
            assert uow._conn is not None
            raw: Any = (await uow._conn.get_raw_connection()).driver_connection
            pid = raw.get_server_pid()
            admin = await _admin(own_db)
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
                while await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                    await asyncio.sleep(0.05)
            finally:
                await admin.close()
            await uow.act_as_service(uuid.uuid4(), None)  # BEGIN and the settings: the first statement
    assert isinstance(lost.value, Unavailable) and lost.value.code == "database_unavailable"
    assert own_db.system_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    async with own_db.system() as uow:
        assert (await uow.rows(_SETTINGS, {})).one().mode == "system"


@pytest.mark.parametrize(
    ("person", "trace"),
    [
        (None, "x'); SELECT pg_sleep(10); --"),  # a trace id of another shape
        (None, "A" * 32),  # upper-case hex: not what the server makes
        ("3f0c3c1e-5a9d-4a7e-9d8b-1f2e3d4c5b6a", "a" * 32),  # a string, not a UUID
    ],
)
async def test_a_value_of_another_shape_goes_as_a_parameter(
    own_db: Database, sent: list[str], person: Any, trace: str
) -> None:
    assert _settings_literal(Mode.SERVICE, person, None, trace) is None
    async with own_db.system():
        pass
    sent.clear()
    async with own_db.service(person, None, trace_id=trace) as uow:
        settings = (await uow.rows(_SETTINGS, {})).one()
    assert tuple(settings) == ("service", person or "", "", trace)
    assert sent[0] == "BEGIN;" and not any("SET LOCAL" in q for q in sent)
