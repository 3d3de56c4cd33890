"""A context's jobs: read, list and cancel them; the sweep fails what passed its deadline."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import select

from core.billing import ledger
from core.billing.models import FINISHED_STATUSES, OPEN_STATUSES, Job
from core.billing.policy import JOBS_READ, JOBS_WRITE
from core.billing.presenters import job_out
from core.billing.schemas import JobOut
from core.billing.settlement import finish_unpaid
from core.context import Role, TenantContext
from core.errors import Conflict, PermissionDenied
from core.observability import trace
from core.pagination import Page, PageRequest
from core.scoping import get_in_context, keyset_page, map_page, not_in_context, scoped, where_given
from core.uow import UnitOfWork
from core.utilities import utcnow


async def _tenant_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID, *, lock: bool = False) -> Job:
    not_found = not_in_context("job", "list jobs with [[billing.list_jobs]]")
    return await get_in_context(uow, Job, ctx, job_id, lock=lock, not_found=not_found)


async def get_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID) -> JobOut:
    ctx.require(JOBS_READ)
    return job_out(await _tenant_job(ctx, uow, job_id))


async def list_jobs(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    status: str | None = None,
    component: str | None = None,
    action: str | None = None,
) -> Page[JobOut]:
    """Jobs of the current context, newest first."""
    ctx.require(JOBS_READ)
    stmt = where_given(
        scoped(Job, ctx), (Job.status, status), (Job.component, component), (Job.action, action)
    )
    filters = (status, component, action)
    rows = await keyset_page(uow, stmt, page, Job.created_at, Job.id, descending=True, under=filters)
    return map_page(rows, job_out)


async def cancel_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID) -> JobOut:
    """Cancel a queued or running job: its hold is released and a result that arrives later is
    ignored. Cancelling a cancelled job is a no-op; a finished one cannot be cancelled."""
    ctx.require(JOBS_WRITE)
    job = await _tenant_job(ctx, uow, job_id, lock=True)
    if job.person_id != ctx.person_id and ctx.org_id is not None and ctx.role not in (Role.OWNER, Role.ADMIN):
        raise PermissionDenied(
            "only the person who ran this job, or an owner or admin of the org, can cancel it",
            code="not_your_job",
            hint="ask whoever ran it, or an owner or admin of the org, to cancel it",
        )
    if job.status == "cancelled":
        return job_out(job)
    if job.status in FINISHED_STATUSES:
        raise Conflict(
            f"the job has already {job.status}",
            code="job_finished",
            hint="nothing to cancel; ask the platform for a refund if the result was wrong",
        )
    with trace(job.id.hex, name="job cancel", job_id=str(job.id), component=job.component, action=job.action):
        await finish_unpaid(
            uow,
            job,
            status="cancelled",
            code="cancelled",
            message=f"cancelled by {ctx.person_slug or ctx.person_id}",
        )
    return job_out(job)


@dataclass(frozen=True)
class SweepReport:
    jobs_failed: int
    credits_expired: int


async def sweep(uow: UnitOfWork, now: dt.datetime | None = None, limit: int = 500) -> SweepReport:
    """Scheduled (system mode): jobs past their deadline fail and their holds are released;
    unused credits of expired grants expire."""
    now = now or utcnow()
    jobs = list(
        (
            await uow.session.execute(
                select(Job)
                .where(Job.status.in_(OPEN_STATUSES), Job.deadline_at < now)
                .order_by(Job.deadline_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
                .execution_options(populate_existing=True)
            )
        ).scalars()
    )
    for job in jobs:
        with trace(
            job.id.hex, name="job expire", job_id=str(job.id), component=job.component, action=job.action
        ):
            if job.rejected_callbacks > 0:
                code, message = (
                    "signature_invalid",
                    (f"the peer's callbacks ({job.rejected_callbacks}) were not signed with its secret"),
                )
            elif job.status == "queued":
                code, message = "not_started", "the job was not started before its deadline"
            else:
                code, message = "timeout", "no result before the job's deadline"
            await finish_unpaid(uow, job, status="failed", code=code, message=message)
    expired = await ledger.expire_lots(uow, now)
    return SweepReport(jobs_failed=len(jobs), credits_expired=expired)
