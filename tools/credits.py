"""Toolset `credits`: the balance and ledger of the current context."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from core import billing
from core.billing.policy import CREDITS_READ, CREDITS_WRITE
from core.billing.schemas import BalanceOut, LedgerEntryOut, LedgerKind
from core.pagination import Page
from tools.base import FIRST_PAGE, OrgArg, PageArg, ToolRuntime, Toolset

credits = Toolset(
    "credits",
    "The credit balance and ledger of the current context.",
    default=False,
    read_scope=CREDITS_READ,
    write_scope=CREDITS_WRITE,
)


@credits.tool(title="Credit balance", read_only=True)
async def credits_balance(rt: ToolRuntime, org: OrgArg = None) -> BalanceOut:
    """The credits of the current context (personal, or the org's, which pays for its members'
    work): balance, available (= balance - held by running jobs) and the open holds. Check it before
    running costly jobs. Read-only, free."""
    return await rt.call(org, billing.get_balance)


@credits.tool(title="Credit ledger", read_only=True)
async def credits_ledger(
    rt: ToolRuntime,
    org: OrgArg = None,
    kind: Annotated[LedgerKind | None, Field(description="Only entries of this kind.")] = None,
    job_id: Annotated[uuid.UUID | None, Field(description="Only entries of this job.")] = None,
    page: PageArg = FIRST_PAGE,
) -> Page[LedgerEntryOut]:
    """The credit ledger of the current context, newest first: grants, purchases, holds, captures
    (charges), releases, refunds and expiries, each with the job it concerns. Read-only, free."""
    return await rt.call(org, billing.list_ledger, page, kind, job_id)
