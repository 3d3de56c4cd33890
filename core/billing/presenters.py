"""Billing rows as the doors show them."""

from __future__ import annotations

from core.billing.models import Job, LedgerEntry, Peer
from core.billing.schemas import GrantOut, JobError, JobOut, LedgerEntryOut, PeerCreated, PeerOut


def job_out(job: Job) -> JobOut:
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


def grant_out(entry: LedgerEntry) -> GrantOut:
    return GrantOut.model_validate(
        {**LedgerEntryOut.model_validate(entry).model_dump(), "tenant_id": entry.org_id or entry.person_id}
    )


def peer_out(peer: Peer, secret: str | None = None) -> PeerCreated:
    return PeerCreated.model_validate({**PeerOut.model_validate(peer).model_dump(), "secret": secret})
