"""Jobs and credits: every rule of running metered work lives here.

A run quotes the action, holds its price on the context's account, records the job and emits
`jobs/job.queued` — all in the caller's transaction. The `jobs/job.queued` handler then runs the
job: a built-in action in-process (its writes, the capture and the job's success commit
together: no charge without a result), or a peer component over HTTP, which reports back at
the signed callback. Failures, cancellations and expired deadlines release the hold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import and_, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from core import audit, webhooks
from core.auth import utcnow
from core.billing import ledger, peers
from core.billing.components import (
    ActionRun,
    ActionSpec,
    builtin_action,
    builtin_actions,
    data_entities,
)
from core.billing.models import (
    FINISHED_STATUSES,
    OPEN_STATUSES,
    Job,
    LedgerEntry,
    Peer,
    PeerSecret,
    WebhookEvent,
)
from core.billing.schemas import (
    ActionOut,
    BalanceOut,
    CallbackIn,
    CallbackOut,
    CreditSettingsIn,
    DataPage,
    GrantIn,
    GrantOut,
    HoldOut,
    JobError,
    JobOut,
    LedgerEntryOut,
    PeerCreated,
    PeerHealthOut,
    PeerIn,
    PeerKeyOut,
    PeerOut,
    PeerUpdateIn,
    PurchaseEvent,
    PurchaseOut,
    QuoteOut,
    RefundIn,
    RunAccepted,
    RunIn,
)
from core.config import Settings
from core.context import ALL_SCOPES, Principal, PrincipalKind, Role, TenantContext, register_scopes
from core.errors import (
    Conflict,
    DomainError,
    FieldIssue,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    ValidationFailed,
    constraint_error,
)
from core.idempotency import idempotent_operation
from core.observability import get_logger, trace
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.registry.gate import require_installed
from core.tenancy.models import Org, Person
from core.uow import Database, UnitOfWork

log = get_logger("atlilith.billing")

JOBS_READ, JOBS_WRITE = "jobs:read", "jobs:write"
CREDITS_READ, CREDITS_WRITE = "credits:read", "credits:write"
register_scopes(
    {
        "jobs:read": "read jobs and quote actions",
        "jobs:write": "run and cancel jobs (spends the context's credits)",
        "credits:read": "read the credit balance and ledger",
        "credits:write": "change credit settings (low-balance threshold)",
    }
)
constraint_error(
    "uq_peers_slug",
    Conflict(
        "a component with this slug exists",
        code="peer_exists",
        hint="update it ([[registry.update_peer_component]]) or choose another slug",
    ),
)
OPEN_HOLDS_SHOWN = 20


class _Abandoned(Exception):
    """The job stopped being ours while its action ran (cancelled or expired): roll it back."""


# --- what can run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    component: str
    action: str
    executor: str
    summary: str
    price: int
    unit: str
    overage: str
    spec: ActionSpec[Any] | None = None
    peer: Peer | None = None


def _unknown_action(component: str, action: str) -> NotFound:
    return NotFound(
        f"no action {action!r} in component {component!r}",
        code="unknown_action",
        hint="list the actions you can run with [[billing.list_actions]]",
    )


async def _target(uow: UnitOfWork, component: str, action: str) -> Target:
    spec = builtin_action(component, action)
    if spec is not None:
        return Target(
            component, action, "builtin", spec.summary, spec.price, spec.unit, spec.overage, spec=spec
        )
    peer = (
        await uow.session.execute(select(Peer).where(Peer.slug == component, Peer.enabled.is_(True)))
    ).scalar_one_or_none()
    found = next((a for a in (peer.actions if peer else []) if a.get("name") == action), None)
    if peer is None or found is None:
        raise _unknown_action(component, action)
    return Target(
        component,
        action,
        "peer",
        str(found.get("summary") or ""),
        int(found.get("price", 0)),
        "call",
        str(found.get("overage") or "cap"),
        peer=peer,
    )


def input_error(exc: ValidationError, prefix: str = "input") -> ValidationFailed:
    issues = [
        FieldIssue(".".join([prefix, *(str(p) for p in e["loc"])]), str(e["msg"]), str(e["type"]))
        for e in exc.errors()
    ]
    return ValidationFailed(
        "invalid input: " + ", ".join(sorted({i.field for i in issues})),
        hint="the action's input schema is in [[billing.list_actions]]",
        errors=issues,
    )


def _validate(
    uow: UnitOfWork, target: Target, raw: dict[str, Any]
) -> tuple[BaseModel | None, dict[str, Any]]:
    """The input as the action will see it (normalized), or a 422 before anything is held."""
    if target.spec is None:
        return None, raw
    try:
        model = target.spec.input.model_validate(raw, context=target.spec.input_context(uow))
    except ValidationError as exc:
        raise input_error(exc) from exc
    return model, model.model_dump(mode="json")


async def _price(ctx: TenantContext, uow: UnitOfWork, target: Target, model: BaseModel | None) -> int:
    if target.spec is not None and target.spec.quote is not None:
        return max(0, await target.spec.quote(ctx, uow, model))
    return target.price


async def _prepare(
    ctx: TenantContext, uow: UnitOfWork, component: str, action: str, raw: dict[str, Any]
) -> tuple[Target, BaseModel | None, dict[str, Any], int]:
    target = await _target(uow, component, action)
    # Every door runs actions through here: `jobs_run`, `POST /v1/run`, the CLI.
    await require_installed(ctx, uow, component=component)
    if target.spec is not None and target.spec.scope:
        ctx.require(target.spec.scope)
    model, payload = _validate(uow, target, raw)
    return target, model, payload, await _price(ctx, uow, target, model)


async def list_actions(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[ActionOut]:
    """Every action this context can run: built-in ones, then enabled peer components'."""
    ctx.require(JOBS_READ)
    items = [
        ActionOut(
            component=s.component,
            action=s.name,
            executor="builtin",
            summary=s.summary,
            price=s.price,
            unit=s.unit,
            overage=s.overage,
            input_schema=s.input.model_json_schema(),
            output_schema=s.output.model_json_schema(),
        )
        for s in builtin_actions().values()
    ]
    for peer in (await uow.session.execute(select(Peer).where(Peer.enabled.is_(True)))).scalars():
        items += [
            ActionOut(
                component=peer.slug,
                action=str(a["name"]),
                executor="peer",
                summary=str(a.get("summary") or ""),
                price=int(a.get("price", 0)),
                unit="call",
                overage=a.get("overage") or "cap",
                input_schema={"type": "object"},
            )
            for a in peer.actions
        ]
    items.sort(key=lambda a: (a.component, a.action))
    if page.cursor:
        after = tuple(decode_cursor(page.cursor, 2))
        items = [a for a in items if (a.component, a.action) > after]
    more = len(items) > page.limit
    items = items[: page.limit]
    return Page[ActionOut](
        items=items,
        next_cursor=encode_cursor(items[-1].component, items[-1].action) if more and items else None,
    )


async def quote(ctx: TenantContext, uow: UnitOfWork, component: str, action: str, data: RunIn) -> QuoteOut:
    """What running the action with this input would hold, and whether the context can afford it."""
    ctx.require(JOBS_READ)
    target, _, _, price = await _prepare(ctx, uow, component, action, data.input)
    acct = await ledger.read_account(uow, ctx.tenant_id)
    avail = ledger.available(acct) if acct else 0
    return QuoteOut(
        component=component,
        action=action,
        credits=price,
        available=avail,
        sufficient=avail >= price,
        overage=target.overage,
    )


# --- running jobs ---------------------------------------------------------------------------------


def _job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        trace_id=job.id.hex,
        component=job.component,
        action=job.action,
        executor=job.executor,
        status=job.status,
        input=job.input,
        output=job.output,
        usage=job.usage,
        error=JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None,
        credits_quoted=job.credits_quoted,
        credits_held=job.credits_held,
        credits_captured=job.credits_captured,
        hold_status=job.hold_status,
        person_id=job.person_id,
        org_id=job.org_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        deadline_at=job.deadline_at,
    )


def _job_id_candidate(uow: UnitOfWork) -> uuid.UUID:
    """The job continues the request's trace when it can: a job's id is its trace id, so the
    request's log lines, the handler's, the peer call's and the callback's share one id."""
    try:
        candidate = uuid.UUID(hex=uow.trace_id)
    except ValueError:
        return uuid.uuid4()
    return candidate if len(uow.trace_id) == 32 else uuid.uuid4()


async def _enqueue(
    ctx: TenantContext, uow: UnitOfWork, target: Target, payload: dict[str, Any], price: int
) -> Job:
    values = {
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
    # The account row is locked last: concurrent runs of one context serialize only from here
    # to commit. A refusal rolls the job row back with everything else.
    await ledger.hold(uow, person_id=ctx.person_id, org_id=ctx.org_id, job_id=job.id, credits=price)
    uow.emit(
        "jobs/job.queued",
        {
            "job_id": job.id,
            "component": job.component,
            "action": job.action,
            "executor": job.executor,
            "credits_held": price,
        },
        trace_id=job.id.hex,
    )
    log.info(
        "job_queued",
        job_id=str(job.id),
        job_trace_id=job.id.hex,
        component=job.component,
        action=job.action,
        credits_held=price,
    )
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
    target, _, payload, price = await _prepare(ctx, uow, component, action, data.input)
    job = await _enqueue(ctx, uow, target, payload, price)
    return RunAccepted(job_id=job.id, trace_id=job.id.hex, status="queued", credits_held=job.credits_held)


async def execute_now(
    ctx: TenantContext, uow: UnitOfWork, component: str, action: str, raw: dict[str, Any]
) -> tuple[JobOut, BaseModel]:
    """Run a built-in action inside the caller's transaction and return its output: for quick
    actions a caller waits for (identity resolution). Still a job — held, captured, traced,
    with its events — and if the action fails, nothing of it (nor any charge) remains."""
    ctx.require(JOBS_WRITE)
    target, model, payload, price = await _prepare(ctx, uow, component, action, raw)
    spec = target.spec
    if spec is None or model is None:
        raise ValidationFailed(
            f"{component}/{action} runs only asynchronously",
            code="not_synchronous",
            hint="run it as a job: [[billing.run_job]]",
        )
    job = await _enqueue(ctx, uow, target, payload, price)
    with trace(job.id.hex, job_id=str(job.id)):
        await _mark_running(uow, job, uow.db.settings.job_run_timeout_seconds)
        run = ActionRun(ctx=ctx, uow=uow, job_id=job.id, trace_id=job.id.hex, credits_held=job.credits_held)
        async with asyncio.timeout(uow.db.settings.job_run_timeout_seconds):
            result = await spec.fn(run, model)
        await _succeed(
            uow,
            job,
            output=result.output.model_dump(mode="json"),
            usage=result.usage,
            charge=job.credits_quoted if result.credits is None else result.credits,
            overage=spec.overage,
        )
    return _job_out(job), result.output


async def _mark_running(uow: UnitOfWork, job: Job, run_seconds: float) -> None:
    now = utcnow()
    job.status, job.started_at, job.attempts = "running", now, job.attempts + 1
    job.deadline_at = now + dt.timedelta(seconds=run_seconds)
    await uow.session.flush()
    uow.emit(
        "jobs/job.started",
        {"job_id": job.id, "component": job.component, "action": job.action, "attempt": job.attempts},
        person_id=job.person_id,
        org_id=job.org_id,
        trace_id=job.id.hex,
    )
    log.info("job_started", job_id=str(job.id), executor=job.executor)


async def _succeed(
    uow: UnitOfWork,
    job: Job,
    *,
    output: dict[str, Any],
    usage: dict[str, float],
    charge: int,
    overage: str,
) -> None:
    acct = await ledger.lock_account(uow, job.person_id, job.org_id)
    memo = f"{job.component}/{job.action}" + (
        " (" + ", ".join(f"{k}={v:g}" for k, v in sorted(usage.items())) + ")" if usage else ""
    )
    captured = await ledger.settle(uow, acct, job, charge=charge, overage=overage, memo=memo)
    job.status, job.finished_at = "succeeded", utcnow()
    job.hold_status = "captured" if captured > 0 else "released"
    job.credits_captured, job.output, job.usage = captured, output, dict(usage)
    await uow.session.flush()
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


async def _finish_unpaid(uow: UnitOfWork, job: Job, *, status: str, code: str, message: str) -> None:
    """Fail or cancel an open job: its hold is released, nothing is charged."""
    acct = await ledger.lock_account(uow, job.person_id, job.org_id)
    await ledger.release(uow, acct, job, memo=f"{status}: {code}")
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


async def _lock_job(uow: UnitOfWork, job_id: uuid.UUID) -> Job | None:
    return (
        await uow.session.execute(
            select(Job).where(Job.id == job_id).with_for_update().execution_options(populate_existing=True)
        )
    ).scalar_one_or_none()


def _service_context(person_id: uuid.UUID, org_id: uuid.UUID | None, trace_id: str) -> TenantContext:
    """The job acts for the person who ran it, in the context it was run in (the run itself
    checked their scopes)."""
    return TenantContext(
        principal=Principal(kind=PrincipalKind.SERVICE, person_id=person_id, scopes=frozenset({ALL_SCOPES})),
        person_id=person_id,
        org_id=org_id,
        trace_id=trace_id,
    )


async def execute_job(
    db: Database, job_id: uuid.UUID, person_id: uuid.UUID, org_id: uuid.UUID | None
) -> None:
    """Run a queued job (the `jobs/job.queued` handler). Idempotent: a job that is no longer
    queued is left alone, so a redelivered event does nothing."""
    tid = job_id.hex
    with trace(tid, job_id=str(job_id)):
        async with db.service(person_id, org_id, trace_id=tid) as uow:
            job = await _lock_job(uow, job_id)
            if job is None or job.status != "queued":
                log.info("job_not_queued", status=job.status if job else None)
                return
            peer: Peer | None = None
            if job.executor == "peer":
                peer = await uow.session.get(Peer, job.peer_id)
            timeout = peer.timeout_seconds if peer else db.settings.job_run_timeout_seconds
            await _mark_running(uow, job, timeout)
        if job.executor == "builtin":
            await _run_builtin(db, job)
        else:
            await _hand_to_peer(db, job)


async def _fail_open_job(db: Database, job: Job, code: str, message: str) -> None:
    async with db.service(job.person_id, job.org_id, trace_id=job.id.hex) as uow:
        locked = await _lock_job(uow, job.id)
        if locked is not None and locked.status in OPEN_STATUSES:
            await _finish_unpaid(uow, locked, status="failed", code=code, message=message)


async def _run_builtin(db: Database, job: Job) -> None:
    spec = builtin_action(job.component, job.action)
    if spec is None:
        await _fail_open_job(db, job, "unknown_action", "this action no longer exists on the platform")
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
            locked = await _lock_job(uow, job.id)
            if locked is None or locked.status != "running":
                raise _Abandoned(locked.status if locked else "gone")
            await _succeed(
                uow,
                locked,
                output=result.output.model_dump(mode="json"),
                usage=result.usage,
                charge=locked.credits_quoted if result.credits is None else result.credits,
                overage=spec.overage,
            )
    except _Abandoned as exc:
        log.info("job_abandoned", status=str(exc))
    except TimeoutError:
        await _fail_open_job(db, job, "timeout", f"the action did not finish within {timeout:g} s")
    except DomainError as err:
        await _fail_open_job(db, job, err.code, err.message)
    except Exception:
        log.exception("action_failed")
        await _fail_open_job(db, job, "action_failed", "the action failed on our side; nothing was charged")


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
    with trace(job_id.hex, job_id=str(job_id)):
        refused: DomainError | None = None
        async with db.system(trace_id=job_id.hex) as uow:
            row = (
                await uow.session.execute(
                    select(Job, Peer)
                    .join(Peer, Peer.id == Job.peer_id)
                    .where(Job.id == job_id, Job.executor == "peer")
                    .with_for_update(of=Job)
                )
            ).one_or_none()
            if row is None:
                raise NotFound(
                    "no peer job has this id",
                    code="job_not_found",
                    hint="call back with the job id the platform sent in the run request",
                )
            job, peer = row
            reason = webhooks.verify(
                await _active_keys(uow, peer.id),
                body,
                headers,
                db.settings.billing_signature_tolerance_seconds,
            )
            if reason is not None:
                if reason == "signature_invalid" and job.status in OPEN_STATUSES:
                    job.rejected_callbacks += 1
                log.warning("callback_refused", reason=reason, peer=peer.slug)
                refused = Unauthenticated(
                    "the callback is not signed with an active key of this peer, or is stale",
                    code=reason,
                    hint=webhooks.HINT,
                )
            else:
                try:
                    data = CallbackIn.model_validate_json(body)
                except ValidationError as exc:
                    raise input_error(exc, "body") from exc
                if job.status != "running":
                    log.info("callback_ignored", status=job.status)
                    return CallbackOut(job_id=job.id, status=job.status, applied=False)
                if data.status == "succeeded":
                    action = next((a for a in peer.actions if a.get("name") == job.action), {})
                    await _succeed(
                        uow,
                        job,
                        output=data.output or {},
                        usage=data.usage.metrics,
                        charge=job.credits_quoted if data.usage.credits is None else data.usage.credits,
                        overage=str(action.get("overage") or "cap"),
                    )
                else:
                    error = data.error
                    await _finish_unpaid(
                        uow,
                        job,
                        status="failed",
                        code=error.code if error else "peer_failed",
                        message=error.message if error else "the peer reported a failure",
                    )
                return CallbackOut(job_id=job.id, status=job.status, applied=True)
        assert refused is not None
        raise refused


async def _tenant_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID, *, lock: bool = False) -> Job:
    stmt = select(Job).where(Job.id == job_id, Job.tenant_id == ctx.tenant_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    job = (await uow.session.execute(stmt)).scalar_one_or_none()
    if job is None:
        raise NotFound(
            "no such job in this context", code="job_not_found", hint="list jobs with [[billing.list_jobs]]"
        )
    return job


async def get_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID) -> JobOut:
    ctx.require(JOBS_READ)
    return _job_out(await _tenant_job(ctx, uow, job_id))


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
    stmt = (
        select(Job)
        .where(Job.tenant_id == ctx.tenant_id)
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(page.limit + 1)
    )
    if status:
        stmt = stmt.where(Job.status == status)
    if component:
        stmt = stmt.where(Job.component == component)
    if action:
        stmt = stmt.where(Job.action == action)
    if page.cursor:
        stmt = stmt.where(tuple_(Job.created_at, Job.id) < tuple_(*decode_cursor(page.cursor, 2)))
    rows = list((await uow.session.execute(stmt)).scalars())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page[JobOut](
        items=[_job_out(j) for j in rows],
        next_cursor=encode_cursor(rows[-1].created_at, rows[-1].id) if more and rows else None,
    )


async def cancel_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID) -> JobOut:
    """Cancel a queued or running job: its hold is released and a result that arrives later is
    ignored. Cancelling a cancelled job is a no-op; a finished one cannot be cancelled."""
    ctx.require(JOBS_WRITE)
    job = await _tenant_job(ctx, uow, job_id, lock=True)
    if job.person_id != ctx.person_id and ctx.org_id is not None and ctx.role not in (Role.OWNER, Role.ADMIN):
        raise PermissionDenied(
            "only the person who ran this job, or an owner or admin of the org, can cancel it",
            code="not_your_job",
        )
    if job.status == "cancelled":
        return _job_out(job)
    if job.status in FINISHED_STATUSES:
        raise Conflict(
            f"the job has already {job.status}",
            code="job_finished",
            hint="nothing to cancel; ask the platform for a refund if the result was wrong",
        )
    with trace(job.id.hex, job_id=str(job.id)):
        await _finish_unpaid(
            uow,
            job,
            status="cancelled",
            code="cancelled",
            message=f"cancelled by {ctx.person_slug or ctx.person_id}",
        )
    return _job_out(job)


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
        with trace(job.id.hex, job_id=str(job.id)):
            if job.rejected_callbacks > 0:
                code, message = (
                    "signature_invalid",
                    (f"the peer's callbacks ({job.rejected_callbacks}) were not signed with its secret"),
                )
            elif job.status == "queued":
                code, message = "not_started", "the job was not started before its deadline"
            else:
                code, message = "timeout", "no result before the job's deadline"
            await _finish_unpaid(uow, job, status="failed", code=code, message=message)
    expired = await ledger.expire_lots(uow, now)
    return SweepReport(jobs_failed=len(jobs), credits_expired=expired)


# --- credits --------------------------------------------------------------------------------------


async def get_balance(ctx: TenantContext, uow: UnitOfWork) -> BalanceOut:
    """Balance, available (= balance - open holds) and the open holds of the current context.
    One indexed row read however long the ledger is."""
    ctx.require(CREDITS_READ)
    acct = await ledger.read_account(uow, ctx.tenant_id)
    holds = (
        await uow.session.execute(
            select(Job.id, Job.component, Job.action, Job.credits_held, Job.deadline_at)
            .where(Job.tenant_id == ctx.tenant_id, Job.hold_status == "open")
            .order_by(Job.deadline_at, Job.id)
            .limit(OPEN_HOLDS_SHOWN)
        )
    ).all()
    count = len(holds)
    if count == OPEN_HOLDS_SHOWN:
        count = (
            await uow.session.execute(
                select(func.count()).where(Job.tenant_id == ctx.tenant_id, Job.hold_status == "open")
            )
        ).scalar_one()
    return BalanceOut(
        balance=acct.balance if acct else 0,
        available=ledger.available(acct) if acct else 0,
        held=acct.held if acct else 0,
        open_holds_count=count,
        open_holds=[
            HoldOut(
                job_id=h.id,
                component=h.component,
                action=h.action,
                credits=h.credits_held,
                expires_at=h.deadline_at,
            )
            for h in holds
        ],
        low_balance_threshold=ledger.threshold(uow, acct),
        context="org" if ctx.org_id else "personal",
        org_id=ctx.org_id,
    )


async def list_ledger(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    kind: str | None = None,
    job_id: uuid.UUID | None = None,
) -> Page[LedgerEntryOut]:
    """Ledger entries of the current context, newest first."""
    ctx.require(CREDITS_READ)
    stmt = (
        select(LedgerEntry)
        .where(LedgerEntry.tenant_id == ctx.tenant_id)
        .order_by(LedgerEntry.seq.desc())
        .limit(page.limit + 1)
    )
    if kind:
        stmt = stmt.where(LedgerEntry.kind == kind)
    if job_id:
        stmt = stmt.where(LedgerEntry.job_id == job_id)
    if page.cursor:
        (after,) = decode_cursor(page.cursor, 1)
        if not isinstance(after, int):
            raise ValidationFailed("the cursor is not valid for this list", code="invalid_cursor")
        stmt = stmt.where(LedgerEntry.seq < after)
    rows = list((await uow.session.execute(stmt)).scalars())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page[LedgerEntryOut](
        items=[LedgerEntryOut.model_validate(r) for r in rows],
        next_cursor=encode_cursor(rows[-1].seq) if more and rows else None,
    )


async def update_credit_settings(ctx: TenantContext, uow: UnitOfWork, data: CreditSettingsIn) -> BalanceOut:
    """Set the context's low-balance threshold (the person; in an org, an owner or admin)."""
    ctx.require(CREDITS_WRITE)
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    acct = await ledger.lock_account(uow, ctx.person_id, ctx.org_id)
    acct.low_balance_threshold = data.low_balance_threshold
    ledger.check_low_balance(uow, acct)
    await uow.session.flush()
    return await get_balance(ctx, uow)


# --- the platform's own operations -----------------------------------------------------------------


async def _owner_of(
    uow: UnitOfWork, person: str | None, org: str | None
) -> tuple[uuid.UUID, uuid.UUID | None]:
    if org is not None:
        found = (await uow.session.execute(select(Org.id, Org.owner_id).where(Org.slug == org))).one_or_none()
        if found is None:
            raise NotFound(
                f"no org has the slug {org!r}", code="org_not_found", hint="find it with [[admin.list_orgs]]"
            )
        return found.owner_id, found.id
    pid = (await uow.session.execute(select(Person.id).where(Person.slug == person))).scalar_one_or_none()
    if pid is None:
        raise NotFound(
            f"no person has the slug {person!r}",
            code="person_not_found",
            hint="find them with [[admin.list_persons]]",
        )
    return pid, None


def _grant_out(entry: LedgerEntry) -> GrantOut:
    return GrantOut.model_validate(
        {**LedgerEntryOut.model_validate(entry).model_dump(), "tenant_id": entry.org_id or entry.person_id}
    )


@idempotent_operation("credits.grant")
async def grant_credits(
    ctx: TenantContext, uow: UnitOfWork, data: GrantIn, idempotency_key: str | None = None
) -> GrantOut:
    """Platform admin: grant credits to a person's or an org's context, optionally expiring."""
    await audit.require_platform_admin(ctx, uow)
    if data.expires_at is not None and data.expires_at <= utcnow():
        raise ValidationFailed(
            "`expires_at` is in the past",
            code="expired_grant",
            errors=[FieldIssue("expires_at", "in the past")],
        )
    person_id, org_id = await _owner_of(uow, data.person, data.org)
    acct = await ledger.lock_account(uow, person_id, org_id)
    entry, created = await ledger.credit(
        uow,
        acct,
        kind="grant",
        credits=data.credits,
        key=f"grant:{idempotency_key or uuid.uuid4().hex}",
        person_id=acct.person_id,
        memo=data.memo or f"granted by {ctx.person_slug}",
        expires_at=data.expires_at,
    )
    if created:
        uow.emit(
            "billing/credits.granted",
            {"entry_id": entry.id, "credits": data.credits, "expires_at": data.expires_at},
            person_id=acct.person_id,
            org_id=acct.org_id,
        )
        await audit.record(
            uow,
            ctx,
            "credits.grant",
            "org" if acct.org_id else "person",
            acct.org_id or acct.person_id,
            {
                "entry_id": entry.id,
                "credits": data.credits,
                "person": data.person,
                "org": data.org,
                "expires_at": data.expires_at,
                "memo": data.memo,
            },
        )
        log.info(
            "credits_granted",
            tenant_id=str(acct.org_id or acct.person_id),
            credits=data.credits,
            by=str(ctx.person_id),
        )
    return _grant_out(entry)


async def refund_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID, data: RefundIn) -> GrantOut:
    """Platform admin: give back what a job was charged (once per job; a retry returns the
    same refund)."""
    await audit.require_platform_admin(ctx, uow)
    job = await _lock_job(uow, job_id)
    if job is None:
        raise NotFound("no such job", code="job_not_found", hint="check the id: a job's id is its trace id")
    if job.credits_captured == 0:
        raise Conflict("this job was not charged", code="nothing_to_refund")
    credits = data.credits or job.credits_captured
    if credits > job.credits_captured:
        raise ValidationFailed(
            f"the job was charged {job.credits_captured} credits; a refund cannot exceed that",
            code="refund_too_large",
            errors=[FieldIssue("credits", f"at most {job.credits_captured}")],
        )
    acct = await ledger.lock_account(uow, job.person_id, job.org_id)
    entry, created = await ledger.credit(
        uow,
        acct,
        kind="refund",
        credits=credits,
        key=f"refund:{job.id}",
        person_id=job.person_id,
        job_id=job.id,
        memo=data.memo or f"refund of {job.component}/{job.action} by {ctx.person_slug}",
    )
    if created:
        uow.emit(
            "billing/credits.refunded",
            {"entry_id": entry.id, "job_id": job.id, "credits": credits},
            person_id=job.person_id,
            org_id=job.org_id,
            trace_id=job.id.hex,
        )
        await audit.record(
            uow,
            ctx,
            "credits.refund",
            "job",
            job.id,
            {
                "entry_id": entry.id,
                "credits": credits,
                "tenant_id": job.org_id or job.person_id,
                "component": job.component,
                "action": job.action,
                "memo": data.memo,
            },
        )
    return _grant_out(entry)


async def record_purchase(db: Database, body: bytes, headers: Mapping[str, str]) -> PurchaseOut:
    """The payment provider's signed webhook (Standard Webhooks): credits bought for a context.
    Replay-safe: stale timestamps are refused and an event id is applied once."""
    settings = db.settings
    if not settings.billing_webhook_secret:
        raise PermissionDenied(
            "the purchase webhook is not configured",
            code="webhook_not_configured",
            hint="set ATLILITH_BILLING_WEBHOOK_SECRET to the provider's signing secret",
        )
    reason = webhooks.verify(
        webhooks.secret_list(settings.billing_webhook_secret),
        body,
        headers,
        settings.billing_signature_tolerance_seconds,
    )
    if reason is not None:
        log.warning("webhook_refused", reason=reason)
        raise Unauthenticated(
            "the webhook signature is missing, wrong or stale", code=reason, hint=webhooks.HINT
        )
    try:
        event = PurchaseEvent.model_validate_json(body)
    except ValidationError as exc:
        raise input_error(exc, "body") from exc
    async with db.system() as uow:
        claimed = (
            await uow.session.execute(
                insert(WebhookEvent)
                .values(
                    id=event.id, kind=event.type, tenant_id=event.data.tenant_id, credits=event.data.credits
                )
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(WebhookEvent.id)
            )
        ).scalar_one_or_none()
        if claimed is None:
            seen = await uow.session.get(WebhookEvent, event.id)
            assert seen is not None
            log.info("webhook_replay", event_id=event.id)
            return PurchaseOut(
                event_id=event.id, applied=False, credits=seen.credits, tenant_id=seen.tenant_id
            )
        org = (
            await uow.session.execute(select(Org.id, Org.owner_id).where(Org.id == event.data.tenant_id))
        ).one_or_none()
        if org is not None:
            person_id, org_id = org.owner_id, org.id
        elif await uow.session.get(Person, event.data.tenant_id) is not None:
            person_id, org_id = event.data.tenant_id, None
        else:
            raise ValidationFailed(
                "no person or org has this tenant id",
                code="unknown_tenant",
                errors=[FieldIssue("data.tenant_id", "unknown")],
            )
        acct = await ledger.lock_account(uow, person_id, org_id)
        memo = " ".join(
            p
            for p in (
                "purchase",
                event.data.reference,
                f"{event.data.amount} {event.data.currency}" if event.data.amount is not None else None,
            )
            if p
        )
        entry, _ = await ledger.credit(
            uow,
            acct,
            kind="purchase",
            credits=event.data.credits,
            key=f"purchase:{event.id}",
            person_id=person_id,
            memo=memo,
        )
        seen_row = await uow.session.get(WebhookEvent, event.id)
        assert seen_row is not None
        seen_row.entry_id = entry.id
        uow.emit(
            "billing/credits.purchased",
            {"entry_id": entry.id, "credits": event.data.credits, "event_id": event.id},
            person_id=person_id,
            org_id=org_id,
        )
    log.info("credits_purchased", tenant_id=str(event.data.tenant_id), credits=event.data.credits)
    return PurchaseOut(
        event_id=event.id, applied=True, credits=event.data.credits, tenant_id=event.data.tenant_id
    )


# --- peer components --------------------------------------------------------------------------------


def _peer_out(peer: Peer, secret: str | None = None) -> PeerCreated:
    return PeerCreated.model_validate({**PeerOut.model_validate(peer).model_dump(), "secret": secret})


async def list_peers(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[PeerOut]:
    """Platform admin: registered peer components."""
    await audit.require_platform_admin(ctx, uow, write=False)
    stmt = select(Peer).order_by(Peer.slug).limit(page.limit + 1)
    if page.cursor:
        (after,) = decode_cursor(page.cursor, 1)
        stmt = stmt.where(Peer.slug > str(after))
    rows = list((await uow.session.execute(stmt)).scalars())
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return Page[PeerOut](
        items=[PeerOut.model_validate(p) for p in rows],
        next_cursor=encode_cursor(rows[-1].slug) if more and rows else None,
    )


async def register_peer(ctx: TenantContext, uow: UnitOfWork, data: PeerIn) -> PeerCreated:
    """Platform admin: register a peer component; its first key is returned once."""
    await audit.require_platform_admin(ctx, uow)
    if any(spec.component == data.slug for spec in builtin_actions().values()):
        raise Conflict(
            f"{data.slug!r} is a built-in component", code="peer_exists", hint="choose another slug"
        )
    peer = Peer(
        id=uuid.uuid4(),
        slug=data.slug,
        name=data.name,
        base_url=data.base_url,
        actions=[a.model_dump() for a in data.actions],
        timeout_seconds=data.timeout_seconds or uow.db.settings.peer_timeout_seconds,
        enabled=data.enabled,
    )
    uow.session.add(peer)
    await uow.session.flush()
    secret = webhooks.new_secret()
    uow.session.add(PeerSecret(id=uuid.uuid4(), peer_id=peer.id, secret=secret))
    await uow.session.flush()
    await uow.session.refresh(peer)
    # The secret is returned once and never written to the log.
    await audit.record(
        uow,
        ctx,
        "peer.register",
        "peer",
        peer.slug,
        {
            "peer_id": peer.id,
            "name": peer.name,
            "base_url": peer.base_url,
            "actions": [a.name for a in data.actions],
            "enabled": peer.enabled,
        },
    )
    log.info("peer_registered", peer=peer.slug, by=str(ctx.person_id))
    return await _peer_with_keys(uow, peer, secret)


async def _peer_by_slug(uow: UnitOfWork, slug: str) -> Peer:
    peer = (
        await uow.session.execute(select(Peer).where(Peer.slug == slug).with_for_update())
    ).scalar_one_or_none()
    if peer is None:
        raise NotFound(
            f"no peer component {slug!r}",
            code="peer_not_found",
            hint="list peers with [[billing.list_peers]]",
        )
    return peer


async def update_peer(ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerUpdateIn) -> PeerCreated:
    """Platform admin: change a peer's URL, actions, timeout or state, or its keys: rotate (a
    new key, returned once; the older ones keep working for the grace) and retire (every key
    but the newest stops at once)."""
    await audit.require_platform_admin(ctx, uow)
    peer = await _peer_by_slug(uow, slug)
    fields = data.model_dump(
        exclude_unset=True, exclude={"rotate_secret", "secret_grace_seconds", "retire_old_secrets"}
    )
    for key, value in fields.items():
        if value is None:
            continue
        setattr(peer, key, value)
    secret = await _rotate_keys(uow, peer, data) if data.rotate_secret or data.retire_old_secrets else None
    peer.updated_at = utcnow()
    await uow.session.flush()
    changed = {k: v for k, v in fields.items() if v is not None}
    if "actions" in changed:
        changed["actions"] = [a["name"] for a in changed["actions"]]
    await audit.record(
        uow,
        ctx,
        "peer.update",
        "peer",
        peer.slug,
        {
            "peer_id": peer.id,
            "changed": changed,
            "secret_rotated": bool(secret),
            "old_secrets_retired": data.retire_old_secrets,
        },
    )
    log.info("peer_updated", peer=peer.slug, rotated=bool(secret), retired=data.retire_old_secrets)
    return await _peer_with_keys(uow, peer, secret)


async def _rotate_keys(uow: UnitOfWork, peer: Peer, data: PeerUpdateIn) -> str | None:
    now = utcnow()
    # Keys already past their end are deleted: a secret is kept no longer than it works.
    await uow.session.execute(
        delete(PeerSecret).where(PeerSecret.peer_id == peer.id, PeerSecret.retires_at <= now)
    )
    still_active = and_(
        PeerSecret.peer_id == peer.id, or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > now)
    )
    secret: str | None = None
    if data.rotate_secret:
        grace = (
            data.secret_grace_seconds
            if data.secret_grace_seconds is not None
            else uow.db.settings.peer_secret_grace_seconds
        )
        ends = now + dt.timedelta(seconds=grace)
        await uow.session.execute(
            update(PeerSecret)
            .where(still_active, or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > ends))
            .values(retires_at=ends)
        )
        secret = webhooks.new_secret()
        uow.session.add(PeerSecret(id=uuid.uuid4(), peer_id=peer.id, secret=secret, created_at=now))
        await uow.session.flush()
    if data.retire_old_secrets:
        newest = (
            select(PeerSecret.id)
            .where(still_active)
            .order_by(PeerSecret.created_at.desc(), PeerSecret.id)
            .limit(1)
            .scalar_subquery()
        )
        await uow.session.execute(
            update(PeerSecret).where(still_active, PeerSecret.id != newest).values(retires_at=now)
        )
    return secret


async def _peer_with_keys(uow: UnitOfWork, peer: Peer, secret: str | None) -> PeerCreated:
    now = utcnow()
    rows = (
        await uow.session.execute(
            select(PeerSecret.id, PeerSecret.created_at, PeerSecret.retires_at)
            .where(
                PeerSecret.peer_id == peer.id,
                or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > now),
            )
            .order_by(PeerSecret.created_at.desc(), PeerSecret.id)
        )
    ).all()
    out = _peer_out(peer, secret)
    out.keys = [PeerKeyOut(id=r.id, created_at=r.created_at, retires_at=r.retires_at) for r in rows]
    return out


async def check_peer(ctx: TenantContext, uow: UnitOfWork, slug: str) -> PeerHealthOut:
    """Platform admin: call the peer's GET {base}/health now."""
    await audit.require_platform_admin(ctx, uow, write=False)
    peer = await _peer_by_slug(uow, slug)
    healthy, status, took = await peers.health(uow.db.settings, peer.base_url)
    return PeerHealthOut(slug=peer.slug, healthy=healthy, status=status, ms=round(took * 1000, 1))


# --- component data ---------------------------------------------------------------------------------


async def get_data(ctx: TenantContext, uow: UnitOfWork, entity: str, page: PageRequest) -> DataPage:
    """GET /v1/data/{entity}: what a component serves about the current context."""
    spec = data_entities().get(entity)
    if spec is None:
        raise NotFound(
            f"no data entity {entity!r}",
            code="unknown_entity",
            hint="entities: " + ", ".join(data_entities()),
        )
    ctx.require(spec.scope)
    items, cursor = await spec.fn(ctx, uow, page)
    return DataPage(entity=entity, items=items, next_cursor=cursor)
