"""A job's charge within its hold settles in one statement (`captures.settle_held`): it writes
exactly what the general path (the account locked and loaded, then `captures.settle`) writes —
entries with their totals, the account, the lots spent, the low-balance alert and its re-arming."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.billing import ledger
from core.billing.settlement import lock_job, mark_running, succeed
from core.db import start_statement_count
from core.relay import Relay
from core.uow import Database
from tests.conftest import Account, signup
from tests.support.billing import app_db, assert_consistent, grant, ledger_state, make_admin
from tests.support.sql import system_sql


async def _account_facts(db: Database, tenant: str) -> dict[str, Any]:
    """The tenant's account, its lots and its low-balance alerts, in order."""
    t = {"t": uuid.UUID(tenant)}
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
    return {
        "account": tuple(account.one()),
        "lots": [tuple(r) for r in lots],
        "alerts": [tuple(r) for r in alerts],
    }


async def _facts(db: Database, tenant: str, job_id: str) -> dict[str, Any]:
    j = {"j": uuid.UUID(job_id)}
    entries = await system_sql(
        db,
        "SELECT kind, amount, balance_delta, held_delta, balance_after, held_after, memo, person_id"
        " FROM billing.ledger WHERE job_id = :j ORDER BY seq",
        j,
    )
    job = await system_sql(
        db, "SELECT status, hold_status, credits_captured FROM billing.jobs WHERE id = :j", j
    )
    return await _account_facts(db, tenant) | {
        # The person column aside, an entry reads the same whoever ran the job.
        "entries": [(*r[:-1], str(r[-1]) == tenant) for r in entries],
        "job": tuple(job.one()),
    }


async def _metered_runs(
    client: httpx.AsyncClient, *, credits: int, runs: int
) -> tuple[Account, list[uuid.UUID]]:
    """A new person granted `credits`, and `runs` queued runs of the metered action (1 credit each)."""
    admin, who = await make_admin(client), await signup(client)
    await grant(client, admin, credits, person=who.slug)
    ids = []
    for _ in range(runs):
        run = await client.post("/v1/run/tests/metered", json={"input": {"credits": 1}}, headers=who.h())
        assert run.status_code == 202, run.text
        ids.append(uuid.UUID(run.json()["job_id"]))
    return who, ids


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
    who, ids = await _metered_runs(client, credits=10, runs=2)
    jobs = [str(i) for i in ids]
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


async def _entries_of(db: Database, tenant: str) -> list[tuple[Any, ...]]:
    """Every capture and release of the tenant's ledger in order, with its job's place among
    the tenant's jobs (ids differ between tenants; the order of the jobs is what is settled)."""
    rows = await system_sql(
        db,
        "SELECT l.kind, l.amount, l.balance_delta, l.held_delta, l.balance_after, l.held_after, l.memo,"
        " (SELECT count(*) FROM billing.jobs j WHERE j.tenant_id = l.tenant_id AND j.id <= l.job_id)"
        " FROM billing.ledger l WHERE l.tenant_id = :t AND l.kind IN ('capture', 'release') ORDER BY l.seq",
        {"t": uuid.UUID(tenant)},
    )
    return [tuple(r) for r in rows]


async def _tenant_facts(db: Database, tenant: str) -> dict[str, Any]:
    jobs = await system_sql(
        db,
        "SELECT status, hold_status, credits_captured, attempts, output, usage, started_at IS NOT NULL,"
        " finished_at IS NOT NULL FROM billing.jobs WHERE tenant_id = :t ORDER BY id",
        {"t": uuid.UUID(tenant)},
    )
    return await _account_facts(db, tenant) | {
        "entries": await _entries_of(db, tenant),
        "jobs": [tuple(r) for r in jobs],
    }


# Charges for six jobs holding 3 each: all, none, part; a low balance crossed and re-armed on the way.
CHARGES = [3, 0, 1, 3, 2, 0]


async def test_a_batch_settles_its_jobs_in_one_statement_as_the_general_path_one_by_one(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.support.billing  # noqa: F401  (registers the metered action)
    from core.billing import captures

    together: list[int] = []
    original = captures._settle_held_together

    async def recorded(uow: Any, held: Any) -> bool:
        done = await original(uow, held)
        together.append(len(held) if done else -len(held))
        return done

    monkeypatch.setattr(captures, "_settle_held_together", recorded)
    db = app_db(client)
    await Relay(db).drain()  # what other tests left queued is not this test's batch
    admin = await make_admin(client)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    people = [await signup(client), await signup(client)]
    jobs: dict[str, list[str]] = {}
    for who in people:
        # 26 available, 5 of them expiring first; six holds of 3 leave 8, under the threshold (10).
        await grant(client, admin, 5, person=who.slug, expires_at=soon)
        await grant(client, admin, 21, person=who.slug)
        for _ in CHARGES:
            run = await client.post("/v1/run/tests/metered", json={"input": {"credits": 0}}, headers=who.h())
            assert run.status_code == 202, run.text
        ids = await system_sql(
            db, "SELECT id FROM billing.jobs WHERE tenant_id = :t ORDER BY id", {"t": uuid.UUID(who.id)}
        )
        jobs[who.id] = [str(i) for i in ids.scalars()]
    general, batched = people
    # The same charges in the order a batch settles its jobs (by id), for both tenants: the
    # general path settles job after job in that order.
    charge_of: dict[str, int] = {}
    for who in people:
        for job_id, credits in zip(jobs[who.id], CHARGES, strict=True):
            charge_of[job_id] = credits
            async with db.system() as uow:
                await uow.session.execute(
                    text("UPDATE billing.jobs SET input = CAST(:i AS jsonb) WHERE id = :j"),
                    {"i": f'{{"credits": {credits}}}', "j": uuid.UUID(job_id)},
                )
    for job_id in jobs[general.id]:
        await _settle_generally(db, general.id, job_id, charge_of[job_id])
    # Everything delivered but the other tenant's six, which then go as one batch.
    async with db.system() as uow:
        await uow.session.execute(
            text("UPDATE platform.outbox SET next_attempt_at = now() + interval '1 hour'"
                 " WHERE data->>'tenant_id' = :t AND status = 'pending'"), {"t": batched.id},
        )  # fmt: skip
    await Relay(db).drain()
    async with db.system() as uow:
        await uow.session.execute(
            text("UPDATE platform.outbox SET next_attempt_at = now() WHERE data->>'tenant_id' = :t"),
            {"t": batched.id},
        )
    relay = Relay(db, workers=1)
    await relay.pump()
    await relay.deliver_due()
    assert together == [len(CHARGES)]

    expected = await _tenant_facts(db, general.id)
    got = await _tenant_facts(db, batched.id)
    assert [j[:3] for j in got["jobs"]] == [
        ("succeeded", "captured" if charge_of[j] else "released", charge_of[j]) for j in jobs[batched.id]
    ]
    assert got["alerts"], "the holds crossed the threshold"
    # The general path's job got the usage it was settled with; the action reports the same.
    assert got == expected
    for who in people:
        assert_consistent(await ledger_state(db, who.id))


async def test_a_batch_holding_a_settled_job_writes_nothing_twice_and_settles_the_others_one_by_one(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement refuses a batch when an entry of one of its jobs exists (here: the first
    job settled earlier in the transaction); each job then goes the one-job way, where the
    settled one finds its entries and writes none."""
    import tests.support.billing  # noqa: F401  (registers the metered action)
    from core.billing import captures

    together: list[bool] = []
    original = captures._settle_held_together

    async def recorded(uow: Any, held: Any) -> bool:
        together.append(await original(uow, held))
        return together[-1]

    monkeypatch.setattr(captures, "_settle_held_together", recorded)
    db = app_db(client)
    who, ids = await _metered_runs(client, credits=30, runs=3)
    async with db.service(uuid.UUID(who.id), None) as uow:
        jobs = [await lock_job(uow, i) for i in ids]
        assert all(j is not None for j in jobs)
        first, *others = [j for j in jobs if j is not None]
        acct = await ledger.lock_account(uow, first.person_id, first.org_id)
        await mark_running(uow, first, 60)
        await succeed(uow, first, output={"ok": True}, usage={"units": 1}, charge=1, overage="cap", acct=acct)
        later: list[captures.HeldCapture] = []
        for job in others:
            await mark_running(uow, job, 60)
            await succeed(
                uow, job, output={"ok": True}, usage={"units": 1}, charge=1, overage="cap", later=later
            )
        assert [c.job for c in later] == others  # decided, not written
        await captures.settle_held_many(uow, [captures.HeldCapture(first, 1, "again", "cap"), *later])
    assert together == [False]
    kinds = await system_sql(
        db,
        "SELECT job_id, kind, count(*) FROM billing.ledger WHERE job_id = ANY(:ids) GROUP BY 1, 2",
        {"ids": ids},
    )
    rows: list[tuple[Any, ...]] = [tuple(r) for r in kinds]
    assert sorted((ids.index(j), k, n) for j, k, n in rows) == [
        (i, kind, 1) for i in range(3) for kind in ("capture", "hold", "release")
    ]
    jobs_now = await system_sql(
        db, "SELECT status, credits_captured FROM billing.jobs WHERE id = ANY(:ids)", {"ids": ids}
    )
    assert [tuple(r) for r in jobs_now] == [("succeeded", 1)] * 3
    assert_consistent(await ledger_state(db, who.id))
