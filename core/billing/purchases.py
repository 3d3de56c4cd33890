"""Credits bought through the payment provider's signed webhook."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from core import webhooks
from core.billing import ledger
from core.billing.models import WebhookEvent
from core.billing.policy import PURCHASE_HINT, input_error, log
from core.billing.schemas import PurchaseEvent, PurchaseOut
from core.config import Settings
from core.errors import FieldIssue, PermissionDenied, Unauthenticated, ValidationFailed
from core.tenancy.models import Org, Person
from core.uow import Database, UnitOfWork


async def record_purchase(db: Database, body: bytes, headers: Mapping[str, str]) -> PurchaseOut:
    """The payment provider's signed webhook (Standard Webhooks): credits bought for a context.
    Replay-safe: stale timestamps are refused and an event id is applied once."""
    event = _verified_event(db.settings, body, headers)
    async with db.system() as uow:
        replay = await _claim(uow, event)
        if replay is not None:
            return replay
        await _apply(uow, event)
    log.info("credits_purchased", tenant_id=str(event.data.tenant_id), credits=event.data.credits)
    return PurchaseOut(
        event_id=event.id, applied=True, credits=event.data.credits, tenant_id=event.data.tenant_id
    )


def _verified_event(settings: Settings, body: bytes, headers: Mapping[str, str]) -> PurchaseEvent:
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
        return PurchaseEvent.model_validate_json(body)
    except ValidationError as exc:
        raise input_error(exc, "body", PURCHASE_HINT) from exc


async def _claim(uow: UnitOfWork, event: PurchaseEvent) -> PurchaseOut | None:
    """Record the event id; None when this call claimed it, else the answer to the replay."""
    claimed = (
        await uow.session.execute(
            insert(WebhookEvent)
            .values(id=event.id, kind=event.type, tenant_id=event.data.tenant_id, credits=event.data.credits)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(WebhookEvent.id)
        )
    ).scalar_one_or_none()
    if claimed is not None:
        return None
    seen = await uow.session.get(WebhookEvent, event.id)
    assert seen is not None
    log.info("webhook_replay", event_id=event.id)
    return PurchaseOut(event_id=event.id, applied=False, credits=seen.credits, tenant_id=seen.tenant_id)


async def _owner_of_tenant(uow: UnitOfWork, tenant_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The (person, org) whose account a tenant id names: an org's owner and the org, or a person."""
    org = (await uow.session.execute(select(Org.id, Org.owner_id).where(Org.id == tenant_id))).one_or_none()
    if org is not None:
        return org.owner_id, org.id
    if await uow.session.get(Person, tenant_id) is not None:
        return tenant_id, None
    raise ValidationFailed(
        "no person or org has this tenant id",
        code="unknown_tenant",
        hint="`data.tenant_id` is the id of the person or org paying, as set in the checkout's metadata",
        errors=[FieldIssue("data.tenant_id", "unknown")],
    )


def _memo(event: PurchaseEvent) -> str:
    return " ".join(
        p
        for p in (
            "purchase",
            event.data.reference,
            f"{event.data.amount} {event.data.currency}" if event.data.amount is not None else None,
        )
        if p
    )


async def _apply(uow: UnitOfWork, event: PurchaseEvent) -> None:
    person_id, org_id = await _owner_of_tenant(uow, event.data.tenant_id)
    acct = await ledger.lock_account(uow, person_id, org_id)
    entry, _ = await ledger.credit(
        uow,
        acct,
        kind="purchase",
        credits=event.data.credits,
        key=f"purchase:{event.id}",
        person_id=person_id,
        memo=_memo(event),
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
