"""A transaction can end with its last statement and COMMIT in one round trip
(`core.db.commit_with`, `UnitOfWork.finish_with`). These pin what that takes from asyncpg's and
SQLAlchemy's private state: the transaction commits once (no second COMMIT is sent), a refusal
(SQLSTATE AT001) undoes that statement only and the general path runs before a plain commit,
any other error rolls everything back, and the statement counter counts it."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.db import asyncpg_dsn, start_statement_count
from core.uow import Database
from tests.support.statements import record_simple_queries

_SCRATCH = "CREATE TABLE IF NOT EXISTS public.commit_with_scratch (marker text PRIMARY KEY)"
_WRITE = text("INSERT INTO public.commit_with_scratch (marker) VALUES (:m)")
_READ = text("SELECT count(*) FROM public.commit_with_scratch WHERE marker = :m")
# The quick path's refusal, as `billing.hold_clear` raises it for an account it does not hold.
_REFUSE = "SELECT billing.hold_clear(NULL, 1, 0, NULL, NULL, NULL)"


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every simple query asyncpg sends (BEGIN, COMMIT, ROLLBACK and ours), in order."""
    return record_simple_queries(monkeypatch)


@pytest.fixture
async def scratch(db: Database) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(db.settings.database_url or ""))
    try:
        await admin.execute(_SCRATCH)
        await admin.execute(f"GRANT ALL ON public.commit_with_scratch TO {db.settings.db_system_role}")
    finally:
        await admin.close()


async def _count(db: Database, marker: str) -> int:
    async with db.system() as uow:
        return int((await uow.rows(_READ, {"m": marker})).scalar_one())


def _insert(marker: str) -> str:
    return f"INSERT INTO public.commit_with_scratch (marker) VALUES ('{marker}')"


async def test_the_last_statement_goes_with_the_commit_and_nothing_commits_twice(
    db: Database, scratch: None, sent: list[str]
) -> None:
    before, last = uuid.uuid4().hex, uuid.uuid4().hex
    taken: list[str] = []

    async def otherwise() -> None:
        taken.append("general")

    stats = start_statement_count()
    async with db.system() as uow:
        await uow.rows(_WRITE, {"m": before})
        sent.clear()
        uow.finish_with(_insert(last), otherwise)
        # With the ORM in use too: its commit then ends its own record only.
        uow.session.add_all([])
    assert sent == [f"SAVEPOINT quick_path;{_insert(last)};COMMIT"]
    assert taken == []
    assert stats.count == 3  # the settings at BEGIN, the write, the last statement
    assert (await _count(db, before), await _count(db, last)) == (1, 1)


async def test_a_refusal_undoes_that_statement_only_and_the_general_path_commits(
    db: Database, scratch: None, sent: list[str]
) -> None:
    before, quick, general = (uuid.uuid4().hex for _ in range(3))

    async with db.system() as uow:

        async def otherwise() -> None:
            await uow.rows(_WRITE, {"m": general})

        await uow.rows(_WRITE, {"m": before})
        sent.clear()
        uow.finish_with(f"{_insert(quick)};{_REFUSE}", otherwise)
    assert sent[:2] == [
        f"SAVEPOINT quick_path;{_insert(quick)};{_REFUSE};COMMIT",
        "ROLLBACK TO SAVEPOINT quick_path",
    ]
    assert sent[-1] == "COMMIT;"
    assert [await _count(db, m) for m in (before, quick, general)] == [1, 0, 1]


async def test_any_other_error_rolls_the_whole_transaction_back(db: Database, scratch: None) -> None:
    before, after = uuid.uuid4().hex, uuid.uuid4().hex
    called: list[str] = []

    async def otherwise() -> None:
        called.append("general")

    with pytest.raises(DBAPIError):
        async with db.system() as uow:
            await uow.rows(_WRITE, {"m": before})
            uow.finish_with(f"{_insert(after)};SELECT 1 / 0", otherwise)
    assert called == []
    assert (await _count(db, before), await _count(db, after)) == (0, 0)
    # The pool's connection is clean for the next unit of work.
    async with db.system() as uow:
        assert (await uow.rows(text("SELECT 1"), {})).scalar_one() == 1


async def test_a_rolled_back_unit_never_sends_its_last_statement(db: Database, scratch: None) -> None:
    marker = uuid.uuid4().hex

    async def otherwise() -> None:
        raise AssertionError("not reached")

    with pytest.raises(RuntimeError):
        async with db.system() as uow:
            uow.finish_with(_insert(marker), otherwise)
            raise RuntimeError("the request failed")
    assert await _count(db, marker) == 0
