"""A context's credits: its balance and open holds, its ledger, its low-balance threshold."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from core.billing import ledger
from core.billing.models import Job, LedgerEntry
from core.billing.policy import CREDITS_READ, CREDITS_WRITE
from core.billing.schemas import BalanceOut, CreditSettingsIn, HoldOut, LedgerEntryOut
from core.context import TenantContext
from core.pagination import Page, PageRequest
from core.presenting import context_kind, from_row
from core.scoping import in_context, keyset_page, map_page, require_manager, scoped, where_given
from core.uow import UnitOfWork

OPEN_HOLDS_SHOWN = 20


async def get_balance(ctx: TenantContext, uow: UnitOfWork) -> BalanceOut:
    """Balance, available (= balance - open holds) and the open holds of the current context.
    One indexed row read however long the ledger is."""
    ctx.require(CREDITS_READ)
    acct = await ledger.read_account(uow, ctx.tenant_id)
    holds = (
        await uow.session.execute(
            select(
                Job.id.label("job_id"),
                Job.component,
                Job.action,
                Job.credits_held.label("credits"),
                Job.deadline_at.label("expires_at"),
            )
            .where(in_context(Job, ctx), Job.hold_status == "open")
            .order_by(Job.deadline_at, Job.id)
            .limit(OPEN_HOLDS_SHOWN)
        )
    ).all()
    count = len(holds)
    if count == OPEN_HOLDS_SHOWN:
        count = (
            await uow.session.execute(
                select(func.count()).where(in_context(Job, ctx), Job.hold_status == "open")
            )
        ).scalar_one()
    return BalanceOut(
        balance=acct.balance if acct else 0,
        available=ledger.available(acct) if acct else 0,
        held=acct.held if acct else 0,
        open_holds_count=count,
        open_holds=[from_row(HoldOut, h) for h in holds],
        low_balance_threshold=ledger.threshold(uow, acct),
        context=context_kind(ctx.org_id),
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
    stmt = where_given(scoped(LedgerEntry, ctx), (LedgerEntry.kind, kind), (LedgerEntry.job_id, job_id))
    rows = await keyset_page(uow, stmt, page, LedgerEntry.seq, descending=True, under=(kind, job_id))
    return map_page(rows, LedgerEntryOut.model_validate)


async def update_credit_settings(ctx: TenantContext, uow: UnitOfWork, data: CreditSettingsIn) -> BalanceOut:
    """Set the context's low-balance threshold (the person; in an org, an owner or admin)."""
    require_manager(ctx, CREDITS_WRITE)
    acct = await ledger.lock_account(uow, ctx.person_id, ctx.org_id)
    acct.low_balance_threshold = data.low_balance_threshold
    ledger.check_low_balance(uow, acct)
    await uow.session.flush()
    return await get_balance(ctx, uow)
