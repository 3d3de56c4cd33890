"""A queued run's hold goes with its transaction's COMMIT (`billing.hold_clear` through
`UnitOfWork.finish_with`): it writes exactly what the general path (`ledger.hold`) writes --
entries with their totals, the account, the low-balance alert -- takes the general path where
the quick one refuses (an alert to fire, too few credits), and costs the run no statement of
its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from core.billing import ledger
from core.db import QUICK_PATH_REFUSED
from core.opener import open_context
from core.uow import Database
from tests.conftest import Account, signup
from tests.support.billing import grant, make_admin
from tests.support.sql import system_sql
from tests.support.statements import counting_client, statements

RUN = "/v1/run/tests/metered"
# Seven runs of 3 on 19 credits, under the default threshold of 10: clear (16, 13 and 10 left:
# not under 10), the one that fires the alert (7), clear (alerted already: 4, 1), too few (402).
RUNS = 7
QUICK = [True, True, True, False, True, True, False]


@pytest.fixture
async def counting(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with counting_client(db) as c:
        yield c


async def _facts(db: Database, who: Account) -> dict[str, Any]:
    t = {"t": uuid.UUID(who.id)}
    account = await system_sql(
        db, "SELECT balance, held, low_balance_alerted FROM billing.accounts WHERE tenant_id = :t", t
    )
    entries = await system_sql(
        db,
        "SELECT kind, amount, balance_delta, held_delta, balance_after, held_after, key LIKE 'hold:%'"
        " FROM billing.ledger WHERE tenant_id = :t ORDER BY seq",
        t,
    )
    alerts = await system_sql(
        db,
        "SELECT data->>'available', data->>'balance', data->>'threshold' FROM platform.outbox"
        " WHERE name = 'billing/credits.low_balance' AND data->>'tenant_id' = :t ORDER BY seq",
        {"t": who.id},
    )
    jobs = await system_sql(db, "SELECT count(*) FROM billing.jobs WHERE person_id = :t", t)
    return {
        "account": tuple(account.one()),
        "entries": [tuple(r) for r in entries],
        "alerts": [tuple(r) for r in alerts],
        "jobs": jobs.scalar_one(),
    }


async def _run_all(client: httpx.AsyncClient, who: Account) -> list[httpx.Response]:
    return [await client.post(RUN, json={"input": {"credits": 3}}, headers=who.h()) for _ in range(RUNS)]


async def test_a_run_holds_with_its_commit_as_the_general_path_would(
    counting: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, quick, general = await make_admin(counting), await signup(counting), await signup(counting)
    for who in (quick, general):
        await grant(counting, admin, 19, person=who.slug)
    fast = await _run_all(counting, quick)
    # The same runs with the quick path refusing every time: the general path alone.
    monkeypatch.setattr(
        ledger, "hold_clear_sql", lambda **_: "SELECT billing.hold_clear(NULL, 1, 0, NULL, NULL, NULL)"
    )
    slow = await _run_all(counting, general)
    for answers in (fast, slow):
        assert [r.status_code for r in answers] == [202] * (RUNS - 1) + [402], [r.text for r in answers]
        assert (answers[-1].json()["required"], answers[-1].json()["available"]) == (3, 1)
    # The quick path costs nothing beyond the run's statements; where it refuses, the general
    # path's own come on top (the refusal then runs the general path, as it always would have).
    # (The run's own: the context, the test component's gate, the job, the hold with COMMIT.)
    for r, clear in zip(fast, QUICK, strict=True):
        assert (statements(r) == 4) is clear, (statements(r), clear)
    assert all(statements(r) > 4 for r in slow)
    facts = await _facts(db, quick)
    assert facts == await _facts(db, general)
    assert facts["account"] == (19, 18, True)
    assert facts["alerts"] == [("7", "19", "10")]
    assert [e[5] for e in facts["entries"] if e[0] == "hold"] == [3, 6, 9, 12, 15, 18]
    assert facts["jobs"] == RUNS - 1


async def test_the_quick_hold_never_reaches_another_tenants_account(
    counting: httpx.AsyncClient, db: Database
) -> None:
    """`billing.hold_clear` runs as its caller: named another tenant's account (which has the
    credits), row-level security hides it, so it refuses and writes nothing there."""
    admin, mine, theirs = await make_admin(counting), await signup(counting), await signup(counting)
    await grant(counting, admin, 50, person=theirs.slug)
    before = await _facts(db, theirs)
    sql = ledger.hold_clear_sql(
        tenant=uuid.UUID(theirs.id),
        credits=3,
        threshold=10,
        entry_id=uuid.uuid4(),
        actor=uuid.UUID(mine.id),
        job_id=uuid.uuid4(),
    )
    async with db.uow() as uow:
        await open_context(uow, mine.token)
        with pytest.raises(DBAPIError) as refused:
            await uow.rows(text(sql), {})
        assert getattr(refused.value.orig, "sqlstate", None) == QUICK_PATH_REFUSED
    assert await _facts(db, theirs) == before
    # Their own quick hold, by contrast, holds.
    ran = await counting.post(RUN, json={"input": {"credits": 3}}, headers=theirs.h())
    assert ran.status_code == 202 and statements(ran) == 4, ran.text
    assert (await _facts(db, theirs))["account"] == (50, 3, False)
