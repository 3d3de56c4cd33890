"""Running a queued job: a built-in action in-process (its writes, the capture and the job's
success commit together: no charge without a result), or a peer component over HTTP, which
reports back at the signed callback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeGuard

from pydantic import ValidationError
from sqlalchemy import any_, bindparam, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import Uuid

from core import webhooks
from core.billing import captures, ledger, peers
from core.billing.components import ActionResult, ActionRun, ActionSpec, builtin_action
from core.billing.models import OPEN_STATUSES, Job, Peer, PeerSecret
from core.billing.policy import CALLBACK_HINT, input_error, log
from core.billing.schemas import CallbackIn, CallbackOut
from core.billing.settlement import finish_unpaid, lock_job, mark_running, succeed, succeed_with
from core.config import Settings
from core.context import ALL_SCOPES, TenantContext, service_context
from core.errors import DomainError, NotFound, Unauthenticated
from core.observability import Resumable, annotate, here, resumed, trace
from core.scoping import row_or
from core.uow import Database, UnitOfWork
from core.utilities import utcnow


class _Abandoned(Exception):
    """The job stopped being ours while its action ran (cancelled or expired): roll it back."""


def _service_context(person_id: uuid.UUID, org_id: uuid.UUID | None, trace_id: str) -> TenantContext:
    """The job acts for the person who ran it, in the context it was run in (the run itself
    checked their scopes)."""
    return service_context(person_id, org_id, frozenset({ALL_SCOPES}), trace_id)


def runs_inline(executor: object, component: object, action: object) -> bool:
    """Whether a queued job runs inside the delivery's own transaction: a quick built-in action
    (decided from the `jobs/job.queued` event, before anything is locked)."""
    if executor != "builtin" or not isinstance(component, str) or not isinstance(action, str):
        return False
    spec = builtin_action(component, action)
    return spec is not None and spec.quick


async def run_inline(uow: UnitOfWork, job_id: uuid.UUID) -> None:
    """Run and settle a queued quick built-in job in `uow`'s transaction (the relay's delivery,
    acting for the job's tenant). The job's row stays locked until that commits: the action's
    writes, the capture (or, if it fails, the release) and the job's outcome commit together
    with the delivery's `done`. If the process dies first, all of it rolls back and the relay
    delivers again: the job is still queued and runs once more, and is settled exactly once.
    Idempotent: a job that is no longer queued is left alone."""
    with trace(job_id.hex, name="job execute", job_id=str(job_id)):
        await _run_if_queued(uow, await lock_job(uow, job_id))


# The jobs of a batch, locked in one statement in the order of their ids (system mode).
_LOCK_JOBS = (
    select(Job)
    .where(Job.id == any_(bindparam("job_ids", type_=ARRAY(Uuid()))))
    .order_by(Job.id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


# A context manager per job of a batch: the span of its event's delivery (`handler_span`).
JobSpans = Callable[[uuid.UUID], AbstractContextManager[object]]


async def run_inline_batch(
    uow: UnitOfWork, jobs: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]], spans: JobSpans
) -> None:
    """`run_inline` for several queued quick jobs (job id, person, org) in `uow`'s transaction,
    which starts in system mode: each job runs acting for its own tenant, exactly as alone,
    within `spans(job_id)`. Every job is locked first, in one statement and in id order, then
    the accounts are settled in tenant order: every job's lock before any account's, as every
    other holder takes them. The relay gives it one tenant's jobs (`core.relay._due`), so it
    holds one account, as one delivery does: it can wait on a run, a cancel, the sweep or
    another batch, never deadlock with one (with several accounts, the sweep, which holds
    several in deadline order, could meet it crosswise: PostgreSQL would then abort one)."""
    tenants = {job_id: org or person for job_id, person, org in jobs}
    rows = (await uow.session.execute(_LOCK_JOBS, {"job_ids": sorted(tenants)})).scalars()
    # A job of another tenant than its event says stays out of reach, as row-level security
    # keeps it from a delivery acting for that tenant.
    locked = {job.id: job for job in rows if tenants[job.id] == job.tenant_id}
    acting: tuple[uuid.UUID, uuid.UUID | None] | None = None

    async def act_for(person: uuid.UUID, org: uuid.UUID | None) -> None:
        nonlocal acting
        if acting != (person, org):
            await uow.act_as_service(person, org)
            acting = (person, org)

    # Every action first, then every settlement: an account stays locked from the batch's
    # first settling statement to its commit, so they come last, and the charges within their
    # holds (all of them, but for an action allowing overage) in one statement per account,
    # after every other write of its jobs (`captures.settle_held_many`). The
    # actions run without a savepoint each (two statements per job): an action that fails
    # raises out of the batch, which then commits nothing, and the relay runs each of its
    # deliveries alone, where a failed action rolls back to its savepoint and the job fails
    # with its hold released (`run_inline`), as it would have in the batch.
    ran: list[tuple[uuid.UUID, uuid.UUID | None, Resumable, _Ran]] = []
    for job_id, person, org in sorted(jobs, key=lambda j: (str(j[2] or j[1]), str(j[0]))):
        await act_for(person, org)
        with spans(job_id):
            delivery = here()
            with trace(job_id.hex, name="job execute", job_id=str(job_id)):
                job = locked.get(job_id)
                if _queued(job):
                    annotate(**{"atlilith.component": job.component, "atlilith.action": job.action})
                    ran.append((person, org, delivery, await _run_action(uow, job, in_batch=True)))
    later: list[captures.HeldCapture] = []
    for person, org, delivery, outcome in ran:
        if later and (org or person) != later[0].job.tenant_id:
            _settle_at_commit(uow, later)
            later = []
        await act_for(person, org)
        with resumed(delivery, outcome.job.id.hex, name="job settle", job_id=str(outcome.job.id)):
            await _settle_ran(uow, outcome, later)
    if later:
        _settle_at_commit(uow, later)


def _settle_at_commit(uow: UnitOfWork, later: list[captures.HeldCapture]) -> None:
    """One account's charges within their holds, settled in one statement as the batch's last
    write (`UnitOfWork.before_commit`): the account is locked from there to the commit only, not
    over the relay's marking of the deliveries and the events' insert besides."""
    first = later[0].job

    async def settle() -> None:
        await uow.act_as_service(first.person_id, first.org_id)  # the relay acts as itself by then
        await captures.settle_held_many(uow, later)

    uow.before_commit(settle)


def _queued(job: Job | None) -> TypeGuard[Job]:
    if job is None or job.status != "queued":
        log.info("job_not_queued", status=job.status if job else None)
        return False
    return True


async def _run_if_queued(uow: UnitOfWork, job: Job | None) -> None:
    if not _queued(job):
        return
    annotate(**{"atlilith.component": job.component, "atlilith.action": job.action})
    await _run_locked(uow, job)


async def execute_job(
    db: Database, job_id: uuid.UUID, person_id: uuid.UUID, org_id: uuid.UUID | None
) -> None:
    """Run a queued job in transactions of its own (the handler's path for peer jobs and long
    built-in actions; a quick built-in one runs inline here too). Idempotent: a job that is no
    longer queued is left alone, so a redelivered event does nothing."""
    tid = job_id.hex
    with trace(tid, name="job execute", job_id=str(job_id)):
        async with db.service(person_id, org_id, trace_id=tid) as uow:
            job = await lock_job(uow, job_id)
            if job is None or job.status != "queued":
                log.info("job_not_queued", status=job.status if job else None)
                return
            annotate(**{"atlilith.component": job.component, "atlilith.action": job.action})
            if job.executor == "builtin" and runs_inline(job.executor, job.component, job.action):
                await _run_locked(uow, job)
                return
            peer: Peer | None = None
            if job.executor == "peer":
                peer = await uow.session.get(Peer, job.peer_id)
            timeout = peer.timeout_seconds if peer else db.settings.job_run_timeout_seconds
            await mark_running(uow, job, timeout)
        if job.executor == "builtin":
            await _run_builtin(db, job)
        else:
            await _hand_to_peer(db, job)


async def _run_locked(uow: UnitOfWork, job: Job) -> None:
    """A locked, queued built-in job: the action runs in a savepoint, so a failure rolls back its
    writes (and the events it emitted) and the job fails with its hold released in the same
    transaction, as `_run_builtin` reports it. On success the account is locked only by the
    settling statement, the transaction's last write before the outbox (other runs of the
    context hold and settle credits meanwhile), and the job's row is written once."""
    await _settle_ran(uow, await _run_action(uow, job))


@dataclass(frozen=True)
class _Ran:
    """A job whose action ran (or could not), still to be settled."""

    job: Job
    started: dt.datetime
    spec: ActionSpec[Any] | None
    result: ActionResult | None = None
    failure: tuple[str, str] | None = None


async def _run_action(uow: UnitOfWork, job: Job, *, in_batch: bool = False) -> _Ran:
    """The action of a locked, queued built-in job, in a savepoint; nothing of the job or its
    account written yet. `in_batch`: without a savepoint, and what the action raises (or a
    failure of its writes) is raised, for the batch to be undone (`run_inline_batch`)."""
    spec = builtin_action(job.component, job.action)
    timeout = uow.db.settings.job_run_timeout_seconds
    started = utcnow()
    if spec is None:
        return _Ran(job, started, None)
    ctx = _service_context(job.person_id, job.org_id, job.id.hex)
    outer, uow.ctx = uow.ctx, ctx
    if in_batch:
        try:
            return _Ran(job, started, spec, await _action(uow, job, spec, ctx, timeout))
        finally:
            uow.ctx = outer
    emitted = len(uow._events)
    try:
        async with uow.session.begin_nested():
            result = await _action(uow, job, spec, ctx, timeout)
    except TimeoutError:
        failure = ("timeout", f"the action did not finish within {timeout:g} s")
    except DomainError as err:
        failure = (err.code, err.message)
    except Exception:
        log.exception("action_failed")
        failure = ("action_failed", _ACTION_FAILED)
    else:
        return _Ran(job, started, spec, result)
    finally:
        uow.ctx = outer
    # What the action emitted rolled back with its writes.
    del uow._events[emitted:]
    return _Ran(job, started, spec, failure=failure)


async def _action(
    uow: UnitOfWork, job: Job, spec: ActionSpec[Any], ctx: TenantContext, seconds: float
) -> ActionResult:
    model = spec.input.model_validate(job.input, context=spec.input_context(uow))
    run = ActionRun(ctx=ctx, uow=uow, job_id=job.id, trace_id=job.id.hex, credits_held=job.credits_held)
    async with asyncio.timeout(seconds):
        result = await spec.fn(run, model)
    # The action's pending writes fail here (inside its savepoint, if any), not at commit.
    await uow.session.flush()
    return result


async def _settle_ran(uow: UnitOfWork, ran: _Ran, later: list[captures.HeldCapture] | None = None) -> None:
    """Settle a job whose action ran: captured on success, released on failure (the job read as
    it is now, after a failed action), the job's start and outcome written with it (`later`: a
    charge within the hold is left there, for the caller to write, `succeed`)."""
    job, timeout = ran.job, uow.db.settings.job_run_timeout_seconds
    if ran.spec is None:
        acct = await ledger.lock_account(uow, job.person_id, job.org_id)
        await mark_running(uow, job, timeout, now=ran.started)
        await finish_unpaid(uow, job, status="failed", acct=acct, **_UNKNOWN_ACTION)
    elif ran.failure is not None:
        job = await lock_job(uow, job.id) or job
        acct = await ledger.lock_account(uow, job.person_id, job.org_id)
        await mark_running(uow, job, timeout, now=ran.started)
        code, message = ran.failure
        await finish_unpaid(uow, job, status="failed", code=code, message=message, acct=acct)
    elif ran.result is not None:
        await mark_running(uow, job, timeout, now=ran.started)
        await succeed_with(uow, job, ran.result, overage=ran.spec.overage, later=later)


_UNKNOWN_ACTION = {"code": "unknown_action", "message": "this action no longer exists on the platform"}
_ACTION_FAILED = "the action failed on our side; nothing was charged"


async def _fail_open_job(db: Database, job: Job, code: str, message: str) -> None:
    async with db.service(job.person_id, job.org_id, trace_id=job.id.hex) as uow:
        locked = await lock_job(uow, job.id)
        if locked is not None and locked.status in OPEN_STATUSES:
            await finish_unpaid(uow, locked, status="failed", code=code, message=message)


async def _run_builtin(db: Database, job: Job) -> None:
    """A long built-in action, already marked running: it runs in a transaction of its own, and
    the job is re-locked at the end (it may have been cancelled or expired meanwhile)."""
    spec = builtin_action(job.component, job.action)
    if spec is None:
        await _fail_open_job(db, job, **_UNKNOWN_ACTION)
        return
    timeout = db.settings.job_run_timeout_seconds
    try:
        async with db.service(job.person_id, job.org_id, trace_id=job.id.hex) as uow:
            ctx = _service_context(job.person_id, job.org_id, job.id.hex)
            uow.ctx = ctx
            model = spec.input.model_validate(job.input, context=spec.input_context(uow))
            run = ActionRun(
                ctx=ctx, uow=uow, job_id=job.id, trace_id=job.id.hex, credits_held=job.credits_held
            )
            async with asyncio.timeout(timeout):
                result = await spec.fn(run, model)
            locked = await lock_job(uow, job.id)
            if locked is None or locked.status != "running":
                raise _Abandoned(locked.status if locked else "gone")
            await succeed_with(uow, locked, result, overage=spec.overage)
    except _Abandoned as exc:
        log.info("job_abandoned", status=str(exc))
    except TimeoutError:
        await _fail_open_job(db, job, "timeout", f"the action did not finish within {timeout:g} s")
    except DomainError as err:
        await _fail_open_job(db, job, err.code, err.message)
    except Exception:
        log.exception("action_failed")
        await _fail_open_job(db, job, "action_failed", _ACTION_FAILED)


def callback_url(settings: Settings, job_id: uuid.UUID) -> str:
    return f"{settings.base_url}/v1/jobs/{job_id}/callback"


async def _hand_to_peer(db: Database, job: Job) -> None:
    async with db.system(trace_id=job.id.hex) as uow:
        peer = await uow.session.get(Peer, job.peer_id)
        keys = await _active_keys(uow, peer.id) if peer is not None else []
    if peer is None or not peer.enabled or not keys:
        await _fail_open_job(db, job, "peer_disabled", "the peer component is no longer available")
        return
    body = json.dumps(
        {
            "job_id": str(job.id),
            "trace_id": job.id.hex,
            "action": job.action,
            "input": job.input,
            "callback_url": callback_url(db.settings, job.id),
            "deadline_at": job.deadline_at.isoformat(),
            "tenant_id": str(job.org_id or job.person_id),
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    log.info("peer_call", peer=peer.slug, url=f"{peer.base_url}/run/{job.action}")
    outcome = await peers.call(
        db.settings,
        f"{peer.base_url}/run/{job.action}",
        body,
        keys,
        trace_id=job.id.hex,
        job_id=str(job.id),
    )
    if not outcome.ok:
        await _fail_open_job(db, job, outcome.code, outcome.message)


async def _active_keys(uow: UnitOfWork, peer_id: uuid.UUID) -> list[str]:
    """The peer's keys that still verify and sign, newest first (system mode)."""
    now = utcnow()
    return list(
        (
            await uow.session.execute(
                select(PeerSecret.secret)
                .where(
                    PeerSecret.peer_id == peer_id,
                    or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > now),
                )
                .order_by(PeerSecret.created_at.desc(), PeerSecret.id)
            )
        ).scalars()
    )


async def receive_callback(
    db: Database, job_id: uuid.UUID, body: bytes, headers: Mapping[str, str]
) -> CallbackOut:
    """A peer reports a job's outcome. Signed with one of the peer's active keys (Standard
    Webhooks); a late or duplicate
    callback (the job already finished) changes nothing. A callback with a bad signature is
    refused and counted: if no good one comes, the job fails for that reason at its deadline
    (a forged callback can never end someone's job)."""
    with trace(job_id.hex, name="job callback", job_id=str(job_id)):
        async with db.system(trace_id=job_id.hex) as uow:
            job, peer = await _lock_peer_job(uow, job_id)
            reason = webhooks.verify(
                await _active_keys(uow, peer.id),
                body,
                headers,
                db.settings.billing_signature_tolerance_seconds,
            )
            if reason is None:
                return await _apply_callback(uow, job, peer, body)
            refused = _refuse_callback(job, peer, reason)
        # Raised once the transaction has committed the count of refused callbacks.
        raise refused


async def _lock_peer_job(uow: UnitOfWork, job_id: uuid.UUID) -> tuple[Job, Peer]:
    job, peer = await row_or(
        uow,
        select(Job, Peer)
        .join(Peer, Peer.id == Job.peer_id)
        .where(Job.id == job_id, Job.executor == "peer")
        .with_for_update(of=Job),
        NotFound(
            "no peer job has this id",
            code="job_not_found",
            hint="call back with the job id the platform sent in the run request",
        ),
    )
    return job, peer


def _refuse_callback(job: Job, peer: Peer, reason: str) -> Unauthenticated:
    if reason == "signature_invalid" and job.status in OPEN_STATUSES:
        job.rejected_callbacks += 1
    log.warning("callback_refused", reason=reason, peer=peer.slug)
    return Unauthenticated(
        "the callback is not signed with an active key of this peer, or is stale",
        code=reason,
        hint=webhooks.HINT,
    )


async def _apply_callback(uow: UnitOfWork, job: Job, peer: Peer, body: bytes) -> CallbackOut:
    try:
        data = CallbackIn.model_validate_json(body)
    except ValidationError as exc:
        raise input_error(exc, "body", CALLBACK_HINT) from exc
    if job.status != "running":
        log.info("callback_ignored", status=job.status)
        return CallbackOut(job_id=job.id, status=job.status, applied=False)
    if data.status == "succeeded":
        action = next((a for a in peer.actions if a.get("name") == job.action), {})
        await succeed(
            uow,
            job,
            output=data.output or {},
            usage=data.usage.metrics,
            charge=job.credits_quoted if data.usage.credits is None else data.usage.credits,
            overage=str(action.get("overage") or "cap"),
        )
    else:
        error = data.error
        await finish_unpaid(
            uow,
            job,
            status="failed",
            code=error.code if error else "peer_failed",
            message=error.message if error else "the peer reported a failure",
        )
    return CallbackOut(job_id=job.id, status=job.status, applied=True)
