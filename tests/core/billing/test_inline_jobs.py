"""Quick built-in jobs run and settle inside the relay delivery's own transaction: a process
that dies, or a delivery that loses its lease, mid-job commits nothing of it; the next delivery
runs the job again and it is settled exactly once."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text

from core.relay import Relay
from core.uow import Database
from tests.conftest import signup
from tests.support import billing as support
from tests.support.billing import (
    FAILED_IN_ITS_DELIVERY,
    SETTLED_ONCE,
    STILL_QUEUED,
    app_db,
    assert_consistent,
    die_mid_job,
    grant,
    job_facts,
    ledger_state,
    make_admin,
    queue_jobs,
    until,
)


async def test_a_process_killed_mid_job_commits_nothing_and_the_job_settles_once(
    client: httpx.AsyncClient,
) -> None:
    (marker,), (job_id,), tenant = await queue_jobs(client)
    db = app_db(client)
    await die_mid_job(db, marker)
    # The action wrote and the process died before the delivery committed: none of it is there,
    # the job is still queued with its hold open, and the delivery's attempt is counted.
    assert await job_facts(db, job_id, marker) == STILL_QUEUED
    assert_consistent(await ledger_state(db, tenant))

    async def settled() -> bool:
        await Relay(db).drain()
        status: str = (await job_facts(db, job_id, marker))["job"][0]
        return status != "queued"

    await until(settled)  # once the dead process's lease runs out
    assert await job_facts(db, job_id, marker) == SETTLED_ONCE | {"delivery": ("done", 2)}
    assert_consistent(await ledger_state(db, tenant))


@pytest.mark.parametrize("chained", [False, True], ids=["own outcome", "outcome and next claim"])
async def test_a_delivery_that_lost_its_lease_mid_job_commits_nothing_and_the_job_settles_once(
    client: httpx.AsyncClient, chained: bool
) -> None:
    gate = uuid.uuid4().hex
    (marker,), (job_id,), tenant = await queue_jobs(client, gate=gate)
    db = app_db(client)
    short = Database(db.settings.model_copy(update={"handler_lease_seconds": 0.2}))
    try:
        slow = Relay(short, workers=1)
        assert await slow.pump() >= 1
        # The first delivery runs the job and waits at the gate, its lease not renewed. Chained
        # (a worker of `deliver_due`), its `done` shares one statement with its next claim:
        # the lost lease must roll back both.
        first = asyncio.create_task(slow.deliver_due() if chained else slow.deliver_one())
        await asyncio.wait_for(support.entered.setdefault(gate, asyncio.Event()).wait(), 20)

        async def claimed_again() -> bool:
            delivery: tuple[str, int] | None = (await job_facts(db, job_id, marker))["delivery"]
            return delivery == ("pending", 2)

        # Another relay takes the delivery once the lease ran out, and waits for the job's row.
        async def take_over() -> None:
            other = Relay(db)
            while not await other.deliver_one():
                await asyncio.sleep(0.02)

        second = asyncio.create_task(take_over())
        await until(claimed_again)
        support.gates.setdefault(gate, asyncio.Event()).set()
        # The first finishes the job, finds its claim gone and rolls everything back; the second
        # then finds the job still queued and runs it (the gate is open now).
        assert await asyncio.wait_for(first, 20) == (1 if chained else True)
        await asyncio.wait_for(second, 20)
    finally:
        await short.dispose()
    assert await job_facts(db, job_id, marker) == SETTLED_ONCE | {"delivery": ("done", 2)}
    assert_consistent(await ledger_state(db, tenant))


async def test_a_quick_job_that_fails_rolls_back_its_writes_and_releases_in_the_delivery(
    client: httpx.AsyncClient,
) -> None:
    (marker,), (job_id,), tenant = await queue_jobs(client)
    db = app_db(client)
    async with db.system() as uow:  # the same job, now refusing after its write
        await uow.session.execute(
            text("UPDATE billing.jobs SET input = input || '{\"refuse\": true}' WHERE id = :j"),
            {"j": uuid.UUID(job_id)},
        )
    await Relay(db).drain()
    facts = await job_facts(db, job_id, marker)
    # The action's client and its event rolled back with its savepoint; the job failed with the
    # action's error and its hold was released, in the one delivery.
    assert facts == FAILED_IN_ITS_DELIVERY
    async with db.system() as uow:
        error = (
            await uow.session.execute(
                text("SELECT error_code, error_message FROM billing.jobs WHERE id = :j"),
                {"j": uuid.UUID(job_id)},
            )
        ).one()
        never = (
            await uow.session.execute(
                text(
                    "SELECT count(*) FROM platform.outbox WHERE name = 'tests/probe.never' AND data->>'marker' = :m"
                ),
                {"m": marker},
            )
        ).scalar_one()
    assert tuple(error) == ("refused_after_write", "the action refused after writing") and never == 0
    assert_consistent(await ledger_state(db, tenant))


# The claim (2: tenant settings, UPDATE) and the delivery's transaction: the service settings,
# the job locked, the action's savepoint around its one SELECT, the settling statement (the
# account, the job's row, the entries, the lots), the outbox, system settings, done. Was 22 per
# job with execute_job's own transactions, 18 with the handler's savepoint and the job's own
# UPDATE. (A worker of `deliver_due` claims its next delivery in the statement that marks this
# one done.)
DELIVERY_BUDGET = 11


async def test_a_quick_job_completes_within_the_delivery_statement_budget(client: httpx.AsyncClient) -> None:
    from core.db import start_statement_count
    from tests.support.registry import install

    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 5, person=a.slug)
    await install(client, a, "identity")
    db = app_db(client)
    relay = Relay(db)
    await relay.drain()
    job = (
        await client.post(
            "/v1/run/identity/resolve-person", json={"input": {"email": "b@example.com"}}, headers=a.h()
        )
    ).json()
    assert await relay.pump() >= 1
    stats = start_statement_count()
    assert await relay.deliver_one()
    count = stats.count
    done = (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()
    assert done["status"] == "succeeded" and done["credits_captured"] == 1
    assert count <= DELIVERY_BUDGET, count
    assert_consistent(await ledger_state(db, a.id))


async def test_a_capture_spends_the_soonest_expiring_lots_first_across_lots(
    client: httpx.AsyncClient,
) -> None:
    import datetime as dt

    admin, a = await make_admin(client), await signup(client)
    now = dt.datetime.now(dt.UTC)
    for credits, hours in ((2, 3), (2, 1), (5, 2)):  # granted out of expiry order
        await grant(
            client, admin, credits, person=a.slug, expires_at=(now + dt.timedelta(hours=hours)).isoformat()
        )
    db = app_db(client)
    job = (await client.post("/v1/run/tests/metered", json={"input": {"credits": 3}}, headers=a.h())).json()
    await Relay(db).drain()
    assert (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()["credits_captured"] == 3
    async with db.system() as uow:
        lots = (
            await uow.session.execute(
                text(
                    "SELECT amount, remaining FROM billing.credit_lots WHERE tenant_id = :t ORDER BY expires_at"
                ),
                {"t": uuid.UUID(a.id)},
            )
        ).all()
    # The 1-hour lot is spent (2), the 2-hour lot gives the last credit, the 3-hour lot is whole.
    assert [tuple(lot) for lot in lots] == [(2, 0), (5, 4), (2, 2)]
    assert_consistent(await ledger_state(db, a.id))
