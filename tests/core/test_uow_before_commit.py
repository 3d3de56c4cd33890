"""`UnitOfWork.before_commit`: a transaction's last writes run at its commit, after everything
else it wrote (its events included), and what they emit is written after them; they fail the
commit when they fail, and a transaction that rolls back never runs them."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import text

from core.errors import DomainError
from core.uow import Database, UnitOfWork

_EVENTS = text("SELECT name, seq FROM platform.outbox WHERE data->>'marker' = :m ORDER BY seq")
_LAST_WRITE = text(
    "SELECT count(*) FROM platform.outbox WHERE data->>'marker' = :m AND name = 'tests/first.emitted'"
)


async def _events(db: Database, marker: str) -> list[str]:
    async with db.system() as uow:
        return [name for name, _ in (await uow.session.execute(_EVENTS, {"m": marker})).all()]


async def test_the_last_writes_run_at_commit_after_the_events_and_what_they_emit_is_written(
    db: Database,
) -> None:
    marker = uuid.uuid4().hex
    seen: list[int] = []
    async with db.system() as uow:

        async def last() -> None:
            # The event emitted before is written by now: these writes come after it.
            seen.append((await uow.session.execute(_LAST_WRITE, {"m": marker})).scalar_one())
            uow.emit("tests/last.emitted", {"marker": marker})

        uow.before_commit(last)
        uow.emit("tests/first.emitted", {"marker": marker})
        assert seen == []  # not before the commit
    assert seen == [1]
    assert await _events(db, marker) == ["tests/first.emitted", "tests/last.emitted"]


async def test_a_failing_last_write_fails_the_commit_and_nothing_of_the_transaction_is_kept(
    db: Database,
) -> None:
    marker = uuid.uuid4().hex

    async def last() -> None:
        raise RuntimeError("the last write failed")

    with pytest.raises(RuntimeError):
        async with db.system() as uow:
            uow.before_commit(last)
            uow.emit("tests/first.emitted", {"marker": marker})
    assert await _events(db, marker) == []


async def test_a_transaction_that_rolls_back_never_runs_its_last_writes(db: Database) -> None:
    marker = uuid.uuid4().hex
    ran: list[UnitOfWork] = []
    with pytest.raises(DomainError):
        async with db.system() as uow:

            async def last() -> None:
                ran.append(uow)

            uow.before_commit(last)
            uow.emit("tests/first.emitted", {"marker": marker})
            raise DomainError("refused", code="refused")
    assert ran == []
    assert await _events(db, marker) == []
