"""Quick built-in jobs delivered as a batch: the relay claims a job's first delivery with up to
15 more first attempts of the same handler and runs them in one transaction (one commit). A batch
that fails, loses a lease or dies with its process commits nothing; each delivery then runs alone
under its claim, so no job is lost, settled twice or charged an extra attempt by its neighbours'
trouble beyond the claim they shared."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest

from core.billing import execution
from core.billing.execution import JobSpans
from core.billing.models import Job
from core.db import start_statement_count
from core.relay import NOT_CHAINED, Relay
from core.uow import Database, UnitOfWork
from tests.support.billing import (
    FAILED_IN_ITS_DELIVERY,
    SETTLED_ONCE,
    STILL_QUEUED,
    app_db,
    assert_consistent,
    die_mid_job,
    job_facts,
    ledger_state,
    queue_jobs,
    until,
)
from tests.support.sql import system_sql

EXECUTE = "billing.execute_job"
Queue = Callable[..., Awaitable[tuple[list[str], list[str], str]]]


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The size of every batch of jobs run (in one transaction), in order. Cleared once the test's
    jobs are queued: the drain before them runs what other modules on the worker left queued."""
    sizes: list[int] = []
    original = execution.run_inline_batch

    async def recorded(
        uow: UnitOfWork, jobs: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]], spans: JobSpans
    ) -> None:
        sizes.append(len(jobs))
        await original(uow, jobs, spans)

    monkeypatch.setattr(execution, "run_inline_batch", recorded)
    yield sizes


@pytest.fixture
def queue(client: httpx.AsyncClient, batches: list[int]) -> Queue:
    """`queue_jobs` for this test, `batches` cleared after it: the drain before the jobs runs
    what other modules on the worker left queued, which is not this test's to count."""

    async def queued(*args: Any, **kwargs: Any) -> tuple[list[str], list[str], str]:
        jobs = await queue_jobs(client, *args, **kwargs)
        batches.clear()
        return jobs

    return queued


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> Iterator[set[uuid.UUID]]:
    """Jobs whose handler raises (a failure of the delivery, not of the job's action), alone or
    in a batch, while their id is in the set."""
    ids: set[uuid.UUID] = set()
    original = execution._run_action

    async def run(uow: UnitOfWork, job: Job, **kwargs: Any) -> Any:
        if job.id in ids:
            raise RuntimeError("the handler broke")
        return await original(uow, job, **kwargs)

    monkeypatch.setattr(execution, "_run_action", run)
    yield ids


async def _delivery_of(db: Database, job_id: str) -> tuple[uuid.UUID, str | None]:
    row = (
        await system_sql(
            db,
            "SELECT d.event_id, d.last_error FROM platform.event_deliveries d JOIN platform.outbox e ON e.id = d.event_id"
            " WHERE e.name = 'jobs/job.queued' AND e.data->>'job_id' = :j AND d.handler = :h",
            {"j": job_id, "h": EXECUTE},
        )
    ).one()
    return row.event_id, row.last_error


async def test_a_batch_whose_handler_fails_for_one_job_settles_the_others_once_and_retries_that_one(
    client: httpx.AsyncClient, queue: Queue, batches: list[int], poisoned: set[uuid.UUID]
) -> None:
    markers, ids, tenant = await queue(4)
    db = app_db(client)
    poisoned.add(uuid.UUID(ids[1]))
    # Its retry falls due well after this test's delivery pass (the suite's backoff is 10 ms).
    later = Database(
        db.settings.model_copy(update={"handler_backoff_base_seconds": 60, "handler_backoff_max_seconds": 60})
    )
    try:
        relay = Relay(later, workers=1)
        assert await relay.pump() >= 4
        assert await relay.deliver_due() == 4
    finally:
        await later.dispose()
    # The four were claimed and run as one batch, which raised and committed nothing; each then
    # ran alone under its claim: three settled once (one attempt each), the broken one failed
    # alone and waits for its retry with its hold open, its one attempt counted.
    assert batches == [4]
    for marker, job_id in zip(markers, ids, strict=True):
        facts = await job_facts(db, job_id, marker)
        if job_id == ids[1]:
            assert facts == STILL_QUEUED
        else:
            assert facts == SETTLED_ONCE | {"delivery": ("done", 1)}
    event_id, error = await _delivery_of(db, ids[1])
    assert error == "RuntimeError: the handler broke"
    assert_consistent(await ledger_state(db, tenant))
    # Mended, its retry (alone: not a first attempt) settles it once.
    poisoned.clear()
    await system_sql(
        db,
        "UPDATE platform.event_deliveries SET next_attempt_at = now() WHERE event_id = :e AND handler = :h",
        {"e": event_id, "h": EXECUTE},
    )
    await Relay(db, workers=1).drain()
    assert batches == [4]
    assert await job_facts(db, ids[1], markers[1]) == SETTLED_ONCE | {"delivery": ("done", 2)}
    assert_consistent(await ledger_state(db, tenant))


async def test_a_job_whose_action_fails_in_a_batch_fails_alone_with_its_writes_undone_and_the_others_settle_once(
    client: httpx.AsyncClient, queue: Queue, batches: list[int]
) -> None:
    markers, ids, tenant = await queue(4)
    db = app_db(client)
    refused = ids[2]
    await system_sql(  # this one's action writes, emits, then refuses
        db,
        "UPDATE billing.jobs SET input = input || '{\"refuse\": true}' WHERE id = :j",
        {"j": uuid.UUID(refused)},
    )
    relay = Relay(db, workers=1)
    assert await relay.pump() >= 4
    assert await relay.deliver_due() == 4
    # The batch's actions run without savepoints: the refusal undid the whole batch, and each
    # delivery then ran alone under its claim (one attempt each). The refused job failed once,
    # its write and its event rolled back to its savepoint and its hold released in its
    # delivery; the three others settled once.
    assert batches == [4]
    for marker, job_id in zip(markers, ids, strict=True):
        facts = await job_facts(db, job_id, marker)
        if job_id == refused:
            assert facts == FAILED_IN_ITS_DELIVERY
        else:
            assert facts == SETTLED_ONCE | {"delivery": ("done", 1)}
    never = await system_sql(
        db,
        "SELECT count(*) FROM platform.outbox WHERE name = 'tests/probe.never' AND data->>'marker' = :m",
        {"m": markers[2]},
    )
    assert never.scalar_one() == 0
    assert_consistent(await ledger_state(db, tenant))


async def test_a_batch_that_lost_one_lease_commits_nothing_and_the_others_settle_once(
    client: httpx.AsyncClient, queue: Queue, batches: list[int]
) -> None:
    markers, ids, tenant = await queue(3)
    db = app_db(client)
    relay = Relay(db, workers=1)
    assert await relay.pump() >= 3
    claims = await relay._claim_some(16)
    assert sorted(str(c.event.data["job_id"]) for c in claims) == sorted(ids)
    assert {c.attempt for c in claims} == {1}
    # Another process took one of them (this relay's lease ran out while it was frozen).
    stolen = claims[1]
    await system_sql(
        db,
        "UPDATE platform.event_deliveries SET claimed_by = 'elsewhere:1', claim_token = gen_random_uuid()"
        " WHERE event_id = :e AND handler = :h",
        {"e": stolen.event.id, "h": stolen.handler},
    )
    assert await relay._deliver_claims(claims) is NOT_CHAINED
    assert batches == [3]
    stolen_job = str(stolen.event.data["job_id"])
    for marker, job_id in zip(markers, ids, strict=True):
        facts = await job_facts(db, job_id, marker)
        if job_id == stolen_job:
            # Left to the process that holds it now: nothing of this relay's runs committed.
            assert facts == STILL_QUEUED
        else:
            assert facts == SETTLED_ONCE | {"delivery": ("done", 1)}
    assert_consistent(await ledger_state(db, tenant))


async def test_a_claim_takes_batch_mates_only_among_first_attempts_of_its_handler_and_tenant(
    client: httpx.AsyncClient, queue: Queue, batches: list[int]
) -> None:
    _, ids, _ = await queue(3)
    _, (elsewhere,), _ = await queue(1, alone=False)  # another tenant's job
    db = app_db(client)
    async with db.system() as uow:
        probe = uow.emit("test/probe.batch", {})
    relay = Relay(db, workers=1)
    assert await relay.pump() >= 5
    first, retry, last = [(await _delivery_of(db, job_id))[0] for job_id in ids]
    other = (await _delivery_of(db, elsewhere))[0]
    # Due in this order, before anything else: a first attempt, another tenant's first attempt,
    # a retry of the same handler, a delivery of another handler, another first attempt.
    for event_id, handler, ago, retried in (
        (first, EXECUTE, 40, False),
        (other, EXECUTE, 35, False),
        (retry, EXECUTE, 30, True),
        (probe, None, 20, False),
        (last, EXECUTE, 10, False),
    ):
        await system_sql(
            db,
            "UPDATE platform.event_deliveries SET next_attempt_at = now() - make_interval(mins => :ago),"
            " attempts = CASE WHEN :retried THEN 1 ELSE 0 END,"
            " last_error = CASE WHEN :retried THEN 'an earlier failure' END"
            " WHERE event_id = :e AND (handler = :h OR CAST(:h AS text) IS NULL)",
            {"e": event_id, "h": handler, "ago": ago, "retried": retried},
        )
    taken = [await relay._claim_some(16) for _ in range(4)]
    assert [sorted(str(c.event.id) for c in claims) for claims in taken] == [
        sorted([str(first), str(last)]),  # the first due, and its tenant's other first attempt
        [str(other)],  # another tenant's: a batch of its own
        [str(retry)],  # a retry goes alone
        [str(probe)],  # so does a handler without a batch form
    ]
    assert [c.attempt for claims in taken for c in claims] == [1, 1, 1, 2, 1]
    for claims in taken:
        await relay._deliver_claims(claims)
    assert batches == [2]
    done = await system_sql(
        db,
        "SELECT count(*) FROM platform.event_deliveries WHERE event_id = ANY(:ids) AND status = 'done'",
        {"ids": [first, other, retry, probe, last]},
    )
    assert done.scalar_one() == 5


async def test_a_process_killed_mid_batch_commits_nothing_and_each_job_then_settles_alone_once(
    client: httpx.AsyncClient, queue: Queue, batches: list[int]
) -> None:
    markers, ids, tenant = await queue(3)
    db = app_db(client)
    await die_mid_job(db, markers[1])
    # The three ran in one batch in the dying process: none of it committed, and each
    # delivery's one attempt (claimed together) is counted.
    for marker, job_id in zip(markers, ids, strict=True):
        assert await job_facts(db, job_id, marker) == STILL_QUEUED

    async def settled() -> bool:
        await Relay(db).drain()
        for marker, job_id in zip(markers, ids, strict=True):
            if (await job_facts(db, job_id, marker))["job"][0] == "queued":
                return False
        return True

    await until(settled)  # once the dead process's leases run out
    # Their claims died with a process: each ran alone (no batch), and settled once.
    assert batches == []
    for marker, job_id in zip(markers, ids, strict=True):
        assert await job_facts(db, job_id, marker) == SETTLED_ONCE | {"delivery": ("done", 2)}
        assert (await _delivery_of(db, job_id))[1] is None
    assert_consistent(await ledger_state(db, tenant))


# Per job of a batch: the action's SELECT (1; with a savepoint around the action, as alone, 3);
# per batch: its claim (2: settings, the claim), system settings, every job locked, the tenant's
# settings, the events, system settings again, `done` with the next claim, the tenant's settings
# again and the one settling statement of its account, at commit (10). Settled one statement per
# job, a job took 2 + 9 / 8; one delivery at a time, 9.4 (and ~11 round trips with BEGIN and
# COMMIT).
BATCH = 8
BATCH_BUDGET = 1 + 10 / BATCH


async def test_a_batch_of_quick_jobs_takes_few_statements_per_job(
    client: httpx.AsyncClient, queue: Queue, batches: list[int]
) -> None:
    _, ids, tenant = await queue(BATCH, "identity/resolve-person")
    db = app_db(client)
    relay = Relay(db, workers=1)
    assert await relay.pump() >= len(ids)
    stats = start_statement_count()
    assert await relay.deliver_due() == len(ids)
    per_job = stats.count / len(ids)
    assert batches == [BATCH]
    succeeded = await system_sql(
        db,
        "SELECT count(*) FROM billing.jobs WHERE id = ANY(:ids) AND status = 'succeeded' AND credits_captured = 1",
        {"ids": [uuid.UUID(j) for j in ids]},
    )
    assert succeeded.scalar_one() == len(ids)
    assert per_job <= BATCH_BUDGET, per_job
    assert_consistent(await ledger_state(db, tenant))
