"""Starting a job: the price is held and the job recorded in the caller's transaction, then run
by the `jobs/job.queued` handler (or at once, for a quick built-in action)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, cast

from pydantic import BaseModel
from sqlalchemy import column, select
from sqlalchemy.dialects.postgresql import insert

from core.billing import ledger
from core.billing.catalogue import Target, prepare
from core.billing.components import ActionRun
from core.billing.models import Job
from core.billing.policy import JOBS_WRITE, log
from core.billing.presenters import job_out
from core.billing.schemas import JobOut, RunAccepted, RunIn
from core.billing.settlement import mark_running, succeed_with
from core.context import TenantContext
from core.db import DriverStatement
from core.errors import ValidationFailed
from core.idempotency import idempotent_operation
from core.observability import trace
from core.outbox import EVENT_COLUMNS
from core.uow import UnitOfWork
from core.utilities import utcnow


def _job_id_candidate(uow: UnitOfWork) -> uuid.UUID:
    """The job continues the request's trace when it can: a job's id is its trace id, so the
    request's log lines, the handler's, the peer call's and the callback's share one id."""
    try:
        candidate = uuid.UUID(hex=uow.trace_id)
    except ValueError:
        return uuid.uuid4()
    return candidate if len(uow.trace_id) == 32 else uuid.uuid4()


# As an ORM statement loading the job beside the account's totals, built once rather than on
# every run.
_JOB_AND_HOLD = select(
    Job, *(column(c) for c in ("acct_balance", "acct_held", "acct_threshold", "acct_alerted"))
).from_statement(ledger.JOB_AND_HOLD)


# A queued run's job and event, compiled once for the driver: no ORM object and no SQLAlchemy
# execution; its hold goes with the COMMIT.
_JOB_QUEUED = DriverStatement.of(ledger.JOB_QUEUED)


def _job_params(
    ctx: TenantContext, uow: UnitOfWork, values: dict[str, Any], price: int, job_id: uuid.UUID
) -> dict[str, Any]:
    """The values of a run's job-and-event statement (`_JOB_QUEUED`, `_JOB_AND_HOLD`)."""
    event = uow.event_row("jobs/job.queued", _queued_data(job_id, values, price), trace_id=job_id.hex)
    return {f"outbox_{c}": event[c] for c in EVENT_COLUMNS} | {
        "job_id": job_id,
        "component": values["component"],
        "action": values["action"],
        "executor": values["executor"],
        "peer_id": values["peer_id"],
        "input": values["input"],
        "amount": price,
        "deadline_at": values["deadline_at"],
        "actor": ctx.person_id,
        "org_id": ctx.org_id,
        "tenant": ctx.tenant_id,
        "entry_id": uuid.uuid4(),
    }


async def _insert_queued(
    ctx: TenantContext, uow: UnitOfWork, values: dict[str, Any], price: int
) -> uuid.UUID | None:
    """A queued run's job and its `jobs/job.queued` event in one statement, and its hold with the
    transaction's COMMIT: the quick path (`billing.hold_clear`) in the same round trip, so the
    account's row lock, which every run of the context needs, lasts for that statement and the
    commit only. When the quick path refuses (short, no account, a low-balance alert to fire),
    `ledger.hold` runs before the commit: a 402 then rolls the job back with everything else.
    None when the candidate id was taken (nothing was written then)."""
    job_id = _job_id_candidate(uow)
    params = _job_params(ctx, uow, values, price, job_id)
    if not await uow.fetch(_JOB_QUEUED.sql, *_JOB_QUEUED.args(params)):
        return None
    quick = ledger.hold_clear_sql(
        tenant=ctx.tenant_id,
        credits=price,
        threshold=uow.db.settings.billing_low_balance_threshold,
        entry_id=params["entry_id"],
        actor=ctx.person_id,
        job_id=job_id,
    )

    async def general() -> None:
        try:
            await ledger.hold(uow, person_id=ctx.person_id, org_id=ctx.org_id, job_id=job_id, credits=price)
        except ledger.PaymentRequired:
            # `job_queued` was logged with the run; at commit, the refusal undoes the job.
            log.info("job_refused", job_id=str(job_id), code="insufficient_credits", credits_required=price)
            raise

    uow.finish_with(quick, general)
    return job_id


async def _insert_held(ctx: TenantContext, uow: UnitOfWork, values: dict[str, Any], price: int) -> Job | None:
    """The job, its hold and its `jobs/job.queued` event in one statement, for a run that goes
    on to execute in this transaction; None when the candidate id was taken (nothing was written
    then). The account row is locked last: concurrent runs of one context serialize only from
    here to commit. A refusal (402) rolls the job row back with everything else."""
    params = _job_params(ctx, uow, values, price, _job_id_candidate(uow))
    row: Any = (await uow.session.execute(_JOB_AND_HOLD, params)).one_or_none()
    if row is None:
        return None
    if row.acct_balance is None:
        # The job is written but nothing was held: `ledger.hold` refuses (402, rolling the job
        # back) or, when the account was only out of this statement's snapshot, holds it now.
        await ledger.hold(uow, person_id=ctx.person_id, org_id=ctx.org_id, job_id=row[0].id, credits=price)
    else:
        await ledger.held(
            uow,
            _Totals(row.acct_balance, row.acct_held, row.acct_threshold, row.acct_alerted),
            person_id=ctx.person_id,
            org_id=ctx.org_id,
            credits=price,
        )
    return cast(Job, row[0])


async def _insert_job(uow: UnitOfWork, values: dict[str, Any]) -> Job:
    # A caller's trace id already used by another job (a reused traceparent) gets a fresh id.
    job = (
        await uow.session.execute(
            insert(Job)
            .values(id=_job_id_candidate(uow), **values)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(Job)
        )
    ).scalar_one_or_none()
    if job is None:
        job = (
            await uow.session.execute(insert(Job).values(id=uuid.uuid4(), **values).returning(Job))
        ).scalar_one()
    return job


def _queued_data(job_id: uuid.UUID, values: dict[str, Any], price: int) -> dict[str, Any]:
    """What `jobs/job.queued` says: the relay's handler decides from it how the job runs."""
    return {
        "job_id": job_id,
        "component": values["component"],
        "action": values["action"],
        "executor": values["executor"],
        "credits_held": price,
    }


@dataclass
class _Totals:
    balance: int
    held: int
    low_balance_threshold: int | None
    low_balance_alerted: bool


def _job_values(
    ctx: TenantContext, uow: UnitOfWork, target: Target, payload: dict[str, Any], price: int
) -> dict[str, Any]:
    return {
        "person_id": ctx.person_id,
        "org_id": ctx.org_id,
        "component": target.component,
        "action": target.action,
        "executor": target.executor,
        "peer_id": target.peer.id if target.peer else None,
        "status": "queued",
        "input": payload,
        "credits_quoted": price,
        "credits_held": price,
        "hold_status": "open",
        "deadline_at": utcnow() + dt.timedelta(seconds=uow.db.settings.job_queue_timeout_seconds),
    }


async def _insert_unheld(ctx: TenantContext, uow: UnitOfWork, values: dict[str, Any], price: int) -> Job:
    # Free, or the caller's trace id is already another job's (a reused traceparent).
    job = await _insert_job(uow, values)
    await ledger.hold(uow, person_id=ctx.person_id, org_id=ctx.org_id, job_id=job.id, credits=price)
    uow.emit("jobs/job.queued", _queued_data(job.id, values, price), trace_id=job.id.hex)
    return job


def _log_queued(job_id: uuid.UUID, values: dict[str, Any], price: int) -> None:
    log.info(
        "job_queued",
        job_id=str(job_id),
        job_trace_id=job_id.hex,
        component=values["component"],
        action=values["action"],
        credits_held=price,
    )


async def _enqueue(
    ctx: TenantContext, uow: UnitOfWork, target: Target, payload: dict[str, Any], price: int
) -> uuid.UUID:
    """Hold the price and record the job; the job's id."""
    values = _job_values(ctx, uow, target, payload, price)
    job_id = await _insert_queued(ctx, uow, values, price) if price > 0 else None
    if job_id is None:
        job_id = (await _insert_unheld(ctx, uow, values, price)).id
    _log_queued(job_id, values, price)
    return job_id


async def _enqueue_job(
    ctx: TenantContext, uow: UnitOfWork, target: Target, payload: dict[str, Any], price: int
) -> Job:
    """`_enqueue`, answering the job as a `Job` (for a run that goes on to execute it)."""
    values = _job_values(ctx, uow, target, payload, price)
    held = await _insert_held(ctx, uow, values, price) if price > 0 else None
    job = held if held is not None else await _insert_unheld(ctx, uow, values, price)
    _log_queued(job.id, values, price)
    return job


@idempotent_operation("jobs.run")
async def run_job(
    ctx: TenantContext,
    uow: UnitOfWork,
    component: str,
    action: str,
    data: RunIn,
    idempotency_key: str | None = None,
) -> RunAccepted:
    """Queue a run of `component/action`: its price is held now (402 when not available), the
    work happens asynchronously, the hold is captured on success and released otherwise."""
    ctx.require(JOBS_WRITE)
    target, _, payload, price = await prepare(ctx, uow, component, action, data.input)
    job_id = await _enqueue(ctx, uow, target, payload, price)
    # The job's `credits_held` is the price it was written with.
    return RunAccepted(job_id=job_id, trace_id=job_id.hex, status="queued", credits_held=price)


async def execute_now(
    ctx: TenantContext, uow: UnitOfWork, component: str, action: str, raw: dict[str, Any]
) -> tuple[JobOut, BaseModel]:
    """Run a built-in action inside the caller's transaction and return its output: for quick
    actions a caller waits for (identity resolution). Still a job — held, captured, traced,
    with its events — and if the action fails, nothing of it (nor any charge) remains. `raw` is
    the door's own arguments (a flat body), so an invalid field is named as the caller wrote it."""
    ctx.require(JOBS_WRITE)
    target, model, payload, price = await prepare(ctx, uow, component, action, raw, flat=True)
    spec = target.spec
    if spec is None or model is None:
        raise ValidationFailed(
            f"{component}/{action} runs only asynchronously",
            code="not_synchronous",
            hint="run it as a job: [[billing.run_job]]",
        )
    job = await _enqueue_job(ctx, uow, target, payload, price)
    with trace(job.id.hex, name="job run_now", job_id=str(job.id), component=component, action=action):
        await mark_running(uow, job, uow.db.settings.job_run_timeout_seconds)
        run = ActionRun(ctx=ctx, uow=uow, job_id=job.id, trace_id=job.id.hex, credits_held=job.credits_held)
        async with asyncio.timeout(uow.db.settings.job_run_timeout_seconds):
            result = await spec.fn(run, model)
        await succeed_with(uow, job, result, overage=spec.overage)
    return job_out(job), result.output
