"""Jobs run from the event spine: `jobs/job.queued` starts a job; a sweep fails what passed its
deadline (releasing the hold) and expires unused credits of expired grants; a new person or
org gets the platform's starting credits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

from core.billing import execution, jobs, ledger
from core.events import ScheduledRun, handler_span, schedule, subscribe
from core.observability import get_logger
from core.outbox import Event
from core.uow import UnitOfWork

log = get_logger("atlilith.billing.handlers")
EXECUTE_JOB = "billing.execute_job"


def _runs_inline(event: Event) -> bool:
    data = event.data
    return event.person_id is not None and execution.runs_inline(
        data.get("executor"), data.get("component"), data.get("action")
    )


async def execute_queued_jobs(events: Sequence[Event], uow: UnitOfWork) -> None:
    """`execute_queued_job` for several quick built-in jobs (first deliveries) in one transaction:
    the relay's batch, one commit for all of them; if any of it fails, none of it commits and
    each job's delivery runs alone. Each job's work runs in its own delivery's span."""
    by_job = {uuid.UUID(str(e.data["job_id"])): e for e in events}
    await execution.run_inline_batch(
        uow,
        [(job_id, cast(uuid.UUID, e.person_id), e.org_id) for job_id, e in by_job.items()],
        lambda job_id: handler_span(EXECUTE_JOB, by_job[job_id], attempt=1),
    )


@subscribe("jobs/job.queued", name=EXECUTE_JOB, batch=execute_queued_jobs, batches=_runs_inline)
async def execute_queued_job(event: Event, uow: UnitOfWork) -> None:
    """Run the job. A quick built-in action runs and settles in this delivery's transaction (a
    crash rolls all of it back and the delivery comes again); a peer job or a long action
    records each step in transactions of its own. Either way a redelivery finds the job no
    longer queued and does nothing."""
    if event.person_id is None:
        log.error("job_event_without_person")
        return
    job_id = uuid.UUID(str(event.data["job_id"]))
    if _runs_inline(event):
        await execution.run_inline(uow, job_id)
    else:
        await execution.execute_job(uow.db, job_id, event.person_id, event.org_id)


@subscribe("platform/person.created", name="billing.starting_credits_person")
async def starting_credits_for_person(event: Event, uow: UnitOfWork) -> None:
    """A new person's personal context gets ATLILITH_BILLING_STARTING_CREDITS (default 0)."""
    if event.person_id is not None:
        await ledger.grant_once(
            uow,
            event.person_id,
            None,
            uow.db.settings.billing_starting_credits,
            reason="starting",
            memo="starting credits",
        )


@subscribe("platform/org.created", name="billing.starting_credits_org")
async def starting_credits_for_org(event: Event, uow: UnitOfWork) -> None:
    """A new org gets ATLILITH_BILLING_STARTING_CREDITS too (its creator is its owner)."""
    if event.person_id is not None and event.org_id is not None:
        await ledger.grant_once(
            uow,
            event.person_id,
            event.org_id,
            uow.db.settings.billing_starting_credits,
            reason="starting",
            memo="starting credits",
        )


@schedule("* * * * *", name="billing.sweep")
async def sweep_jobs_and_credits(run: ScheduledRun, uow: UnitOfWork) -> None:
    report = await jobs.sweep(uow)
    if report.jobs_failed or report.credits_expired:
        log.info("billing_swept", jobs_failed=report.jobs_failed, credits_expired=report.credits_expired)
