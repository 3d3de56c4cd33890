"""Billing rows as the doors show them."""

from __future__ import annotations

from core.billing.models import Job, LedgerEntry, Peer
from core.billing.schemas import GrantOut, JobError, JobOut, LedgerEntryOut, PeerCreated, PeerOut
from core.presenting import from_row


def job_out(job: Job) -> JobOut:
    error = JobError(code=job.error_code, message=job.error_message or "") if job.error_code else None
    return from_row(JobOut, job, trace_id=job.id.hex, error=error)


def grant_out(entry: LedgerEntry) -> GrantOut:
    return GrantOut.model_validate(
        {**LedgerEntryOut.model_validate(entry).model_dump(), "tenant_id": entry.org_id or entry.person_id}
    )


def peer_out(peer: Peer, secret: str | None = None) -> PeerCreated:
    return PeerCreated.model_validate({**PeerOut.model_validate(peer).model_dump(), "secret": secret})
