"""The platform's own credit operations: grants and refunds (platform admins)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from core import audit
from core.billing import ledger
from core.billing.models import Job, LedgerEntry
from core.billing.policy import log
from core.billing.presenters import grant_out
from core.billing.schemas import GrantIn, GrantOut, RefundIn
from core.billing.settlement import lock_job
from core.context import TenantContext
from core.errors import Conflict, FieldIssue, NotFound, ValidationFailed
from core.idempotency import idempotent_operation
from core.scoping import one_or, row_or
from core.tenancy.models import Org, Person
from core.uow import UnitOfWork
from core.utilities import utcnow


async def _owner_of(
    uow: UnitOfWork, person: str | None, org: str | None
) -> tuple[uuid.UUID, uuid.UUID | None]:
    if org is not None:
        found = await row_or(
            uow,
            select(Org.id, Org.owner_id).where(Org.slug == org),
            NotFound(
                f"no org has the slug {org!r}", code="org_not_found", hint="find it with [[admin.list_orgs]]"
            ),
        )
        return found.owner_id, found.id
    pid = await one_or(
        uow,
        select(Person.id).where(Person.slug == person),
        NotFound(
            f"no person has the slug {person!r}",
            code="person_not_found",
            hint="find them with [[admin.list_persons]]",
        ),
    )
    return pid, None


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
            hint="give a future `expires_at`, or leave it out for credits that never expire",
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
    return grant_out(entry)


async def refund_job(ctx: TenantContext, uow: UnitOfWork, job_id: uuid.UUID, data: RefundIn) -> GrantOut:
    """Platform admin: give back what a job was charged, once per job. A retry asking for the
    same refund returns it; one asking for another amount or memo is refused (409
    `already_refunded`)."""
    await audit.require_platform_admin(ctx, uow)
    job = await lock_job(uow, job_id)
    if job is None:
        raise NotFound("no such job", code="job_not_found", hint="check the id: a job's id is its trace id")
    credits = _refundable(job, data.credits)
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
    if not created:
        _refuse_another_refund(entry, credits, data.memo)
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
    return grant_out(entry)


def _refundable(job: Job, asked: int | None) -> int:
    """The credits a refund of `job` gives back: what was asked, at most what it was charged."""
    if job.credits_captured == 0:
        raise Conflict(
            "this job was not charged",
            code="nothing_to_refund",
            hint=(
                f"the job is {job.status}: only a charge can be refunded (a failed or cancelled job "
                "was never charged, a running one is when it succeeds); to give credits anyway, "
                "grant them ([[billing.grant_credits]])"
            ),
        )
    credits = asked or job.credits_captured
    if credits > job.credits_captured:
        raise ValidationFailed(
            f"the job was charged {job.credits_captured} credits; a refund cannot exceed that",
            code="refund_too_large",
            hint=f"refund at most {job.credits_captured} credits, or leave `credits` out to refund all of it",
            errors=[FieldIssue("credits", f"at most {job.credits_captured}")],
        )
    return credits


def _refuse_another_refund(entry: LedgerEntry, credits: int, memo: str | None) -> None:
    """The ledger key makes a job's refund one entry: a retry is answered with it, but a request
    for another amount (or memo) would otherwise read as done while nothing was given back."""
    if entry.amount == credits and (memo is None or memo == entry.memo):
        return
    raise Conflict(
        f"this job was already refunded {entry.amount} credits",
        code="already_refunded",
        hint=(
            f"a job is refunded once, and this one's refund gave back {entry.amount} credits; "
            "to give more, grant them ([[billing.grant_credits]])"
        ),
        extra={"refunded_credits": entry.amount, "entry_id": str(entry.id)},
    )
