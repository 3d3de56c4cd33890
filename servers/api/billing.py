"""The component contract (/v1/actions, /v1/quote, /v1/run, /v1/jobs, /v1/data), credits
(/v1/credits), the payment provider's webhook, and the platform admin's billing routes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Depends, Header, Path, Query, Request, Response, status

from core import billing, registry
from core.billing.schemas import (
    ACTION_PATTERN,
    COMPONENT_PATTERN,
    ActionOut,
    BalanceOut,
    CallbackOut,
    CreditSettingsIn,
    DataPage,
    GrantIn,
    GrantOut,
    JobOut,
    JobStatus,
    LedgerEntryOut,
    LedgerKind,
    PeerCreated,
    PeerHealthOut,
    PeerIn,
    PeerOut,
    PeerUpdateIn,
    PurchaseOut,
    QuoteOut,
    RefundIn,
    RunAccepted,
    RunIn,
)
from core.opener import call_in
from core.pagination import Page
from servers.api.deps import CallerDep, DbDep, FeatureRouter, IdempotencyKey, PageDep

router = FeatureRouter()

NOT_ROUTES = {
    "billing.execute_job": "runs from the jobs/job.queued event handler",
    "billing.execute_now": "the engine of synchronous feature doors (POST /v1/identity/resolve-*)",
    "billing.sweep": "scheduled housekeeping (expired deadlines, holds and grants)",
    "billing.register_peer": "the billing half of registry.register_peer (one operation, /v1/admin/peers)",
    "billing.update_peer": "the billing half of registry.update_peer (one operation, /v1/admin/peers/{peer})",
}
Component = Annotated[str, Path(pattern=COMPONENT_PATTERN, description="e.g. `identity`.")]
Action = Annotated[str, Path(pattern=ACTION_PATTERN, description="e.g. `resolve-person`.")]
PeerSlug = Annotated[str, Path(pattern=COMPONENT_PATTERN, description="The peer component's slug.")]


async def _webhook_headers(  # async: a plain `def` dependency runs in the thread pool
    webhook_id: Annotated[str | None, Header(alias="webhook-id", max_length=200)] = None,
    webhook_timestamp: Annotated[str | None, Header(alias="webhook-timestamp", max_length=20)] = None,
    webhook_signature: Annotated[str | None, Header(alias="webhook-signature", max_length=2000)] = None,
) -> dict[str, str]:
    """The Standard Webhooks headers of a signed request (see core.webhooks)."""
    sent = {
        "webhook-id": webhook_id,
        "webhook-timestamp": webhook_timestamp,
        "webhook-signature": webhook_signature,
    }
    return {k: v for k, v in sent.items() if v}


WebhookHeaders = Annotated[dict[str, str], Depends(_webhook_headers)]


# --- the component contract -------------------------------------------------------------------


@router.get("/v1/actions", response_model=Page[ActionOut], tags=["jobs"])
async def list_actions(caller: CallerDep, page: PageDep) -> Page[ActionOut]:
    """Actions you can run here: those of built-in and peer components installed in this context
    (or always available), with price and input schema. Find others with GET /v1/registry and
    install them with POST /v1/installations."""
    return await call_in(caller.context(gates=True), billing.list_actions, page)


@router.post("/v1/quote/{component}/{action}", response_model=QuoteOut, tags=["jobs"])
async def quote(component: Component, action: Action, data: RunIn, caller: CallerDep) -> QuoteOut:
    """What running this action with this input would hold, and whether you can afford it."""
    return await call_in(caller.context(gates=True), billing.quote, component, action, data)


@router.post(
    "/v1/run/{component}/{action}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunAccepted,
    tags=["jobs"],
    responses={402: {"description": "Not enough credits available (`insufficient_credits`)."}},
)
async def run(
    component: Component,
    action: Action,
    data: RunIn,
    caller: CallerDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> RunAccepted:
    """Run an action as a job: its price is held now, the job runs asynchronously; poll
    GET /v1/jobs/{job_id}. The trace id is the job id."""
    async with caller.context(gates=True) as (ctx, uow):
        accepted = await billing.run_job(ctx, uow, component, action, data, idempotency_key=idempotency_key)
    response.headers["Location"] = f"/v1/jobs/{accepted.job_id}"
    return accepted


@router.get("/v1/jobs", response_model=Page[JobOut], tags=["jobs"])
async def list_jobs(
    caller: CallerDep,
    page: PageDep,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    component: Annotated[str | None, Query(max_length=40)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[JobOut]:
    """Jobs of the current context, newest first."""
    return await caller.call(billing.list_jobs, page, status_filter, component, action)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
async def get_job(job_id: uuid.UUID, caller: CallerDep) -> JobOut:
    return await caller.call(billing.get_job, job_id)


@router.post("/v1/jobs/{job_id}/cancel", response_model=JobOut, tags=["jobs"])
async def cancel_job(job_id: uuid.UUID, caller: CallerDep) -> JobOut:
    """Cancel a queued or running job; its hold is released."""
    return await caller.call(billing.cancel_job, job_id)


@router.post("/v1/jobs/{job_id}/callback", response_model=CallbackOut, tags=["peers"])
async def job_callback(job_id: uuid.UUID, request: Request, db: DbDep, signed: WebhookHeaders) -> CallbackOut:
    """A peer component reports a job's result (no bearer: signed per Standard Webhooks with an
    active key of the peer, see docs/billing.md). Late and duplicate callbacks answer
    `applied: false` and change nothing."""
    return await billing.receive_callback(db, job_id, await request.body(), signed)


@router.get("/v1/data/{entity}", response_model=DataPage, tags=["jobs"])
async def get_data(
    entity: Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*$", max_length=81)],
    caller: CallerDep,
    page: PageDep,
) -> DataPage:
    """Data a component serves about the current context (`billing.usage`, `identity.persons`)."""
    return await caller.call(billing.get_data, entity, page)


# --- credits ------------------------------------------------------------------------------------


@router.get("/v1/credits", response_model=BalanceOut, tags=["credits"])
async def get_balance(caller: CallerDep) -> BalanceOut:
    """Balance, available and open holds of the current context (personal, or the org's)."""
    return await caller.call(billing.get_balance)


@router.get("/v1/credits/ledger", response_model=Page[LedgerEntryOut], tags=["credits"])
async def list_ledger(
    caller: CallerDep,
    page: PageDep,
    kind: Annotated[LedgerKind | None, Query()] = None,
    job_id: Annotated[uuid.UUID | None, Query()] = None,
) -> Page[LedgerEntryOut]:
    return await caller.call(billing.list_ledger, page, kind, job_id)


@router.put("/v1/credits/settings", response_model=BalanceOut, tags=["credits"])
async def update_credit_settings(data: CreditSettingsIn, caller: CallerDep) -> BalanceOut:
    """Set the low-balance threshold of this context (in an org: owner or admin)."""
    return await caller.call(billing.update_credit_settings, data)


@router.post("/v1/credits/purchases", response_model=PurchaseOut, tags=["credits"])
async def purchase_webhook(request: Request, db: DbDep, signed: WebhookHeaders) -> PurchaseOut:
    """The payment provider's webhook (no bearer: signed per Standard Webhooks, replay-safe;
    see docs/billing.md)."""
    return await billing.record_purchase(db, await request.body(), signed)


# --- platform admin -----------------------------------------------------------------------------


@router.post(
    "/v1/admin/credits/grants", status_code=status.HTTP_201_CREATED, response_model=GrantOut, tags=["admin"]
)
async def grant_credits(data: GrantIn, caller: CallerDep, idempotency_key: IdempotencyKey = None) -> GrantOut:
    """Grant credits to a person or an org (platform admins)."""
    return await caller.call_person_level(billing.grant_credits, data, idempotency_key=idempotency_key)


@router.post("/v1/admin/jobs/{job_id}/refund", response_model=GrantOut, tags=["admin"])
async def refund_job(
    job_id: uuid.UUID, caller: CallerDep, data: Annotated[RefundIn | None, Body()] = None
) -> GrantOut:
    """Give back what a job was charged (platform admins; once per job). Without a body: all of it."""
    return await caller.call_person_level(billing.refund_job, job_id, data or RefundIn())


@router.get("/v1/admin/peers", response_model=Page[PeerOut], tags=["admin"])
async def list_peers(caller: CallerDep, page: PageDep) -> Page[PeerOut]:
    return await caller.call_person_level(billing.list_peers, page)


@router.post(
    "/v1/admin/peers", status_code=status.HTTP_201_CREATED, response_model=PeerCreated, tags=["admin"]
)
async def register_peer(data: PeerIn, caller: CallerDep) -> PeerCreated:
    """Register a peer component; the response carries its first key (Standard Webhooks), once."""
    return await caller.call_person_level(registry.register_peer, data)


@router.patch("/v1/admin/peers/{peer}", response_model=PeerCreated, tags=["admin"])
async def update_peer(peer: PeerSlug, data: PeerUpdateIn, caller: CallerDep) -> PeerCreated:
    """Change a peer, or its keys: `rotate_secret: true` adds a key (shown once; older keys work
    on for `secret_grace_seconds`), `retire_old_secrets: true` stops every key but the newest."""
    return await caller.call_person_level(registry.update_peer, peer, data)


@router.get("/v1/admin/peers/{peer}/health", response_model=PeerHealthOut, tags=["admin"])
async def check_peer(peer: PeerSlug, caller: CallerDep) -> PeerHealthOut:
    """Call the peer's GET {base}/health now."""
    return await caller.call_person_level(billing.check_peer, peer)
