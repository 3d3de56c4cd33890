"""Toolset `credits`: the balance and ledger of the current context."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from core import billing
from core.billing.schemas import BalanceOut, LedgerEntryOut, LedgerKind
from core.pagination import Page, PageRequest
from tools.base import CursorArg, LimitArg, OrgArg, ToolRuntime, Toolset

credits = Toolset("credits", "The credit balance and ledger of the current context.", default=False)


@credits.tool(
    "credits_balance",
    """The credits of the current context (personal, or the org's, which pays for its members'
work): balance, available (= balance - held by running jobs) and the open holds. Check it
before running costly jobs. Read-only, free.""",
    title="Credit balance",
    read_only=True,
)
async def credits_balance(rt: ToolRuntime, org: OrgArg = None) -> BalanceOut:
    async with rt.context(org) as (ctx, uow):
        return await billing.get_balance(ctx, uow)


@credits.tool(
    "credits_ledger",
    """The credit ledger of the current context, newest first: grants, purchases, holds,
captures (charges), releases, refunds and expiries, each with the job it concerns. Read-only, free.""",
    title="Credit ledger",
    read_only=True,
)
async def credits_ledger(
    rt: ToolRuntime,
    org: OrgArg = None,
    kind: Annotated[LedgerKind | None, Field(description="Only entries of this kind.")] = None,
    job_id: Annotated[uuid.UUID | None, Field(description="Only entries of this job.")] = None,
    limit: LimitArg = 20,
    cursor: CursorArg = None,
) -> Page[LedgerEntryOut]:
    async with rt.context(org) as (ctx, uow):
        return await billing.list_ledger(ctx, uow, PageRequest(limit=limit, cursor=cursor), kind, job_id)
