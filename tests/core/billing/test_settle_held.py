"""A job's charge within its hold settles in one statement (`captures.settle_held`): it writes
exactly what the general path (the account locked and loaded, then `captures.settle`) writes —
entries with their totals, the account, the lots spent, the low-balance alert and its re-arming."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from core.billing import ledger
from core.billing.settlement import lock_job, mark_running, succeed
from core.db import start_statement_count
from core.relay import Relay
from core.uow import Database
from tests.conftest import signup
from tests.support.billing import app_db, assert_consistent, grant, ledger_state, make_admin
from tests.support.sql import system_sql


async def _facts(db: Database, tenant: str, job_id: str) -> dict[str, Any]:
    t, j = {"t": uuid.UUID(tenant)}, {"j": uuid.UUID(job_id)}
    entries = await system_sql(
        db,
        "SELECT kind, amount, balance_delta, held_delta, balance_after, held_after, memo, person_id"
        " FROM billing.ledger WHERE job_id = :j ORDER BY seq",
        j,
    )
    account = await system_sql(
        db, "SELECT balance, held, low_balance_alerted FROM billing.accounts WHERE tenant_id = :t", t
    )
    lots = await system_sql(
        db, "SELECT amount, remaining FROM billing.credit_lots WHERE tenant_id = :t ORDER BY expires_at", t
    )
    alerts = await system_sql(
        db,
        "SELECT data->>'available', data->>'balance', data->>'threshold' FROM platform.outbox"
        " WHERE name = 'billing/credits.low_balance' AND data->>'tenant_id' = :t ORDER BY seq",
        {"t": tenant},
    )
    job = await system_sql(
        db, "SELECT status, hold_status, credits_captured FROM billing.jobs WHERE id = :j", j
    )
    return {
        # The person column aside, an entry reads the same whoever ran the job.
        "entries": [(*r[:-1], str(r[-1]) == tenant) for r in entries],
        "account": tuple(account.one()),
        "lots": [tuple(r) for r in lots],
        "alerts": [tuple(r) for r in alerts],
        "job": tuple(job.one()),
    }


async def _settle_generally(db: Database, person: str, job_id: str, credits: int) -> None:
    """The general path, as a job allowing overage or an existing entry takes it."""
    async with db.service(uuid.UUID(person), None) as uow:
        job = await lock_job(uow, uuid.UUID(job_id))
        assert job is not None and job.status == "queued"
        acct = await ledger.lock_account(uow, job.person_id, job.org_id)
        await mark_running(uow, job, 60)
        await succeed(
            uow,
            job,
            output={"ok": True},
            usage={"units": credits},
            charge=credits,
            overage="cap",
            acct=acct,
        )


@pytest.mark.parametrize("credits", [0, 1, 3, 5])
async def test_one_statement_settles_as_the_general_path(client: httpx.AsyncClient, credits: int) -> None:
    import tests.support.billing  # noqa: F401  (registers the metered action)

    db = app_db(client)
    admin = await make_admin(client)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    jobs: dict[str, str] = {}
    people = [await signup(client), await signup(client)]
    for who in people:
        # 12 available (10 of them expiring): over the default threshold (10) until the hold of
        # 3; a job that releases it all goes back over it (re-armed).
        await grant(client, admin, 10, person=who.slug, expires_at=soon)
        await grant(client, admin, 2, person=who.slug)
        run = await client.post(
            "/v1/run/tests/metered", json={"input": {"credits": credits}}, headers=who.h()
        )
        assert run.status_code == 202 and run.json()["credits_held"] == 3, run.text
        jobs[who.id] = run.json()["job_id"]
    general, fast = people
    await _settle_generally(db, general.id, jobs[general.id], credits)
    await Relay(db).drain()  # the other job: the relay runs it, settling in one statement

    expected = await _facts(db, general.id, jobs[general.id])
    got = await _facts(db, fast.id, jobs[fast.id])
    assert got == expected
    assert got["job"] == ("succeeded", "captured" if credits else "released", min(credits, 3))
    assert [e[0] for e in got["entries"]] == ["hold"] + ["capture"] * (credits > 0) + ["release"] * (
        credits < 3
    )
    for who in people:
        assert_consistent(await ledger_state(db, who.id))


async def test_the_settling_statement_writes_the_jobs_changes_itself_and_any_other_change_first(
    client: httpx.AsyncClient,
) -> None:
    import tests.support.billing  # noqa: F401  (registers the metered action)

    db = app_db(client)
    admin, who = await make_admin(client), await signup(client)
    await grant(client, admin, 10, person=who.slug)
    jobs = []
    for _ in range(2):
        run = await client.post("/v1/run/tests/metered", json={"input": {"credits": 1}}, headers=who.h())
        assert run.status_code == 202, run.text
        jobs.append(run.json()["job_id"])
    for job_id, beside in zip(jobs, (False, True), strict=True):
        async with db.service(uuid.UUID(who.id), None) as uow:
            job = await lock_job(uow, uuid.UUID(job_id))
            assert job is not None
            await mark_running(uow, job, 60)
            if beside:  # a change the statement does not write: flushed before it
                job.rejected_callbacks += 1
            stats = start_statement_count()
            await succeed(uow, job, output={"ok": True}, usage={"units": 1}, charge=1, overage="cap")
            # The job's start and outcome go in the settling statement, unflushed before it.
            assert stats.count == (2 if beside else 1), (beside, stats.count)
        row = await system_sql(
            db,
            "SELECT status, hold_status, credits_captured, attempts, started_at IS NOT NULL,"
            " rejected_callbacks FROM billing.jobs WHERE id = :j",
            {"j": uuid.UUID(job_id)},
        )
        assert tuple(row.one()) == ("succeeded", "captured", 1, 1, True, 1 if beside else 0)
    assert_consistent(await ledger_state(db, who.id))
