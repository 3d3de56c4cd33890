"""A job's state changes and what they do to its hold: running, succeeded (captured), failed or
cancelled (released). Each emits the job's event in the same transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.types import Uuid

from core.billing import captures, ledger
from core.billing.components import ActionResult
from core.billing.models import CreditAccount, Job
from core.billing.policy import log
from core.uow import UnitOfWork
from core.utilities import utcnow


async def mark_running(
    uow: UnitOfWork, job: Job, run_seconds: float, *, now: dt.datetime | None = None
) -> None:
    """The job starts (at `now`): written with the next flush or commit, which for a job run
    inline is the one that settles it (one UPDATE of its row)."""
    now = now or utcnow()
    job.status, job.started_at, job.attempts = "running", now, job.attempts + 1
    job.deadline_at = now + dt.timedelta(seconds=run_seconds)
    uow.emit(
        "jobs/job.started",
        {"job_id": job.id, "component": job.component, "action": job.action, "attempt": job.attempts},
        person_id=job.person_id,
        org_id=job.org_id,
        trace_id=job.id.hex,
    )
    log.info("job_started", job_id=str(job.id), executor=job.executor)


async def succeed(
    uow: UnitOfWork,
    job: Job,
    *,
    output: dict[str, Any],
    usage: dict[str, int | float],
    charge: int,
    overage: str,
    acct: CreditAccount | None = None,
    later: list[captures.HeldCapture] | None = None,
) -> None:
    """Capture the job's charge (`acct`: its account, if already locked). The job's outcome is
    set before the ledger is written, so it reaches the database in the same flush as anything
    earlier (its start, for a job run inline): one UPDATE of its row. A charge within the hold
    (any charge unless the action allows overage) settles without loading the account, in one
    statement that locks it only until commit. `later`: such a charge is decided and its event
    emitted, but its writes (the job's row too) are left in `later`, for one statement to settle
    a batch's jobs together (`captures.settle_held_many`)."""
    memo = f"{job.component}/{job.action}" + (
        " (" + ", ".join(f"{k}={v:g}" for k, v in sorted(usage.items())) + ")" if usage else ""
    )
    within_hold = acct is None and (overage != "allow" or charge <= job.credits_held)
    if within_hold:
        # What `capped_charge` gives for such a charge, whatever the account holds.
        captured = min(max(0, charge), job.credits_held)
    else:
        acct = acct or await ledger.lock_account(uow, job.person_id, job.org_id)
        captured = captures.capped_charge(acct, job, charge, overage)
    job.status, job.finished_at = "succeeded", utcnow()
    job.hold_status = "captured" if captured > 0 else "released"
    job.credits_captured, job.output, job.usage = captured, output, dict(usage)
    if within_hold and later is not None and job.credits_held > 0:
        later.append(captures.HeldCapture(job, captured, memo, overage))
    else:
        await _capture(uow, job, captured, memo=memo, overage=overage, acct=None if within_hold else acct)
    uow.emit(
        "jobs/job.succeeded",
        {
            "job_id": job.id,
            "component": job.component,
            "action": job.action,
            "credits_captured": captured,
            "usage": dict(usage),
        },
        person_id=job.person_id,
        org_id=job.org_id,
        trace_id=job.id.hex,
    )
    log.info(
        "job_succeeded",
        job_id=str(job.id),
        credits_captured=captured,
        **{f"usage_{k}": v for k, v in usage.items()},
    )


async def _capture(
    uow: UnitOfWork, job: Job, captured: int, *, memo: str, overage: str, acct: CreditAccount | None
) -> None:
    """Write a decided capture now: within the hold (`acct` None) in one statement that writes
    the job's row too (its start, for a job run inline, and its outcome), else on the account."""
    if acct is None and not await captures.settle_held(uow, job, charge=captured, memo=memo):
        acct = await ledger.lock_account(uow, job.person_id, job.org_id)
    if acct is not None:
        await captures.settle(uow, acct, job, charge=captured, overage=overage, memo=memo)
    await uow.session.flush()


async def succeed_with(
    uow: UnitOfWork,
    job: Job,
    result: ActionResult,
    *,
    overage: str,
    acct: CreditAccount | None = None,
    later: list[captures.HeldCapture] | None = None,
) -> None:
    """Settle a job with what its built-in action returned: the action's own price, or the quote
    when it named none."""
    await succeed(
        uow,
        job,
        output=result.output.model_dump(mode="json"),
        usage=result.usage,
        charge=job.credits_quoted if result.credits is None else result.credits,
        overage=overage,
        acct=acct,
        later=later,
    )


async def finish_unpaid(
    uow: UnitOfWork, job: Job, *, status: str, code: str, message: str, acct: CreditAccount | None = None
) -> None:
    """Fail or cancel an open job: its hold is released, nothing is charged."""
    acct = acct or await ledger.lock_account(uow, job.person_id, job.org_id)
    await captures.release(uow, acct, job, memo=f"{status}: {code}")
    job.status, job.hold_status, job.finished_at = status, "released", utcnow()
    job.error_code, job.error_message = code, message[:2000]
    await uow.session.flush()
    uow.emit(
        f"jobs/job.{status}",
        {"job_id": job.id, "component": job.component, "action": job.action, "reason": code},
        person_id=job.person_id,
        org_id=job.org_id,
        trace_id=job.id.hex,
    )
    log.info(f"job_{status}", job_id=str(job.id), reason=code)


# Built once: every delivery of a job locks it, and building the select cost more than running it.
_LOCK_JOB = (
    select(Job)
    .where(Job.id == bindparam("job_id", type_=Uuid()))
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def lock_job(uow: UnitOfWork, job_id: uuid.UUID) -> Job | None:
    return (await uow.session.execute(_LOCK_JOB, {"job_id": job_id})).scalar_one_or_none()
