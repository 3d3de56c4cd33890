"""Toolset `admin` (off by default): the platform operator's tools — persons, orgs, suspension,
the audit log, credit grants. Every tool refuses callers who are not platform admins."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from core import billing
from core.admin import service
from core.admin.schemas import (
    AdminOrgOut,
    AdminPersonDetail,
    AdminPersonOut,
    AuditEntryOut,
    DeadLetterOut,
    PersonStatus,
    ReactivateIn,
    RedriveIn,
    RedriveOut,
    SuspendIn,
    SuspensionOut,
)
from core.billing.schemas import GrantIn, GrantOut
from core.pagination import Page, PageRequest
from tools.base import CursorArg, Flat, IdempotencyArg, LimitArg, ToolRuntime, Toolset

NOT_TOOLS = {
    "admin.set_platform_admin": "operator-only (`atlilith admin promote|demote`): needs database access",
}

PersonArg = Annotated[str, Field(description="The person's handle or id.", min_length=1, max_length=64)]
SearchArg = Annotated[str | None, Field(description="Part of a handle, email or name.", max_length=100)]


admin = Toolset(
    "admin",
    "Platform admin: persons, orgs, suspension, the audit log, dead letters, credit grants"
    " (platform admins only).",
    default=False,
    platform=True,
)


@admin.tool(
    "admin_persons",
    """Platform admins: every person on the platform, newest first, with status and whether they
are platform admins. `q` matches handle, email or name. Read-only, free.""",
    title="List persons",
    read_only=True,
)
async def admin_persons(
    rt: ToolRuntime,
    q: SearchArg = None,
    status: Annotated[PersonStatus | None, Field(description="Only persons in this state.")] = None,
    limit: LimitArg = 20,
    cursor: CursorArg = None,
) -> Page[AdminPersonOut]:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.list_persons(ctx, uow, PageRequest(limit=limit, cursor=cursor), q, status)


@admin.tool(
    "admin_person_get",
    """Platform admins: one person by handle or id — status (and suspension reason), orgs and
roles, live sessions and API keys. Read-only, free.""",
    title="Get a person",
    read_only=True,
)
async def admin_person_get(rt: ToolRuntime, person: PersonArg) -> AdminPersonDetail:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.get_person(ctx, uow, person)


@admin.tool(
    "admin_person_suspend",
    """Platform admins: suspend a person. Their sessions end now and every token and API key
of theirs is refused from the next call on, everywhere. A reason is required and audited.
Not yourself, not another platform admin. Repeating it changes nothing. Free.""",
    title="Suspend a person",
    read_only=False,
    destructive=True,
    idempotent=True,
)
async def admin_person_suspend(rt: ToolRuntime, person: PersonArg, fields: Flat[SuspendIn]) -> SuspensionOut:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.suspend_person(ctx, uow, person, fields)


@admin.tool(
    "admin_person_reactivate",
    """Platform admins: lift a person's suspension. Their API keys work again at once; they
sign in again (suspension ended their sessions). Audited. Repeating it changes nothing. Free.""",
    title="Reactivate a person",
    read_only=False,
    idempotent=True,
)
async def admin_person_reactivate(
    rt: ToolRuntime,
    person: PersonArg,
    fields: Flat[ReactivateIn],
) -> SuspensionOut:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.reactivate_person(ctx, uow, person, fields)


@admin.tool(
    "admin_orgs",
    """Platform admins: every org, newest first, with owner and member count. `q` matches
slug or name. Read-only, free.""",
    title="List orgs",
    read_only=True,
)
async def admin_orgs(
    rt: ToolRuntime,
    q: Annotated[str | None, Field(description="Part of a slug or name.", max_length=100)] = None,
    limit: LimitArg = 20,
    cursor: CursorArg = None,
) -> Page[AdminOrgOut]:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.list_orgs(ctx, uow, PageRequest(limit=limit, cursor=cursor), q)


@admin.tool(
    "admin_audit",
    """Platform admins: the audit log, newest first — who (actor, credential), what (action,
target, details), when, and the trace id. Filter by actor (handle, id or `operator`), action
(`person.suspend` or a prefix `person.*`), target and time range. Read-only, free.""",
    title="Audit log",
    read_only=True,
)
async def admin_audit(
    rt: ToolRuntime,
    actor: Annotated[
        str | None, Field(description="A handle, a person id, or `operator`.", max_length=64)
    ] = None,
    action: Annotated[
        str | None, Field(description="`credits.grant`, or a prefix such as `person.*`.", max_length=64)
    ] = None,
    target_type: Annotated[
        str | None, Field(description="`person`, `org`, `job` or `peer`.", max_length=32)
    ] = None,
    target_id: Annotated[
        str | None,
        Field(description="The target's id (a person's handle, an org's slug).", max_length=64),
    ] = None,
    since: Annotated[dt.datetime | None, Field(description="From this instant (inclusive).")] = None,
    until: Annotated[dt.datetime | None, Field(description="Before this instant.")] = None,
    limit: LimitArg = 20,
    cursor: CursorArg = None,
) -> Page[AuditEntryOut]:
    page = PageRequest(limit=limit, cursor=cursor)
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.list_audit(ctx, uow, page, actor, action, target_type, target_id, since, until)


@admin.tool(
    "admin_dead_letters",
    """Platform admins: event deliveries a handler gave up on after its attempts (a process
that died handling one counts), most recent first, with the last error. Filter by handler.
Read-only, free.""",
    title="Dead letters",
    read_only=True,
)
async def admin_dead_letters(
    rt: ToolRuntime,
    handler: Annotated[str | None, Field(description="Only this handler's.", max_length=200)] = None,
    limit: LimitArg = 20,
    cursor: CursorArg = None,
) -> Page[DeadLetterOut]:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.list_dead_letters(ctx, uow, PageRequest(limit=limit, cursor=cursor), handler)


@admin.tool(
    "admin_dead_letters_redrive",
    """Platform admins: retry a handler's dead deliveries — all of them, or one event's — with
fresh attempts (fix the cause first). Repeating it re-drives nothing more. Audited. Free.""",
    title="Re-drive dead letters",
    read_only=False,
    idempotent=True,
)
async def admin_dead_letters_redrive(
    rt: ToolRuntime,
    fields: Flat[RedriveIn],
) -> RedriveOut:
    async with rt.context(person_level=True) as (ctx, uow):
        return await service.redrive_dead_letters(ctx, uow, fields)


@admin.tool(
    "admin_credits_grant",
    """Platform admins: grant credits to a person's personal context (`to_person`) or to an org
(`to_org`) — exactly one — optionally expiring. Audited. Pass `idempotency_key` so a retry
never grants twice.""",
    title="Grant credits",
    read_only=False,
)
async def admin_credits_grant(
    rt: ToolRuntime,
    credits: Annotated[int, Field(description="How many credits.", ge=1, le=1_000_000_000)],
    to_person: Annotated[str | None, Field(description="The person's handle.", max_length=40)] = None,
    to_org: Annotated[str | None, Field(description="Or the org's slug.", max_length=40)] = None,
    expires_at: Annotated[
        dt.datetime | None, Field(description="Unused credits expire then (with a timezone).")
    ] = None,
    memo: Annotated[str | None, Field(description="Shown on the ledger entry.", max_length=500)] = None,
    idempotency_key: IdempotencyArg = None,
) -> GrantOut:
    data = GrantIn(person=to_person, org=to_org, credits=credits, expires_at=expires_at, memo=memo)
    async with rt.context(person_level=True) as (ctx, uow):
        return await billing.grant_credits(ctx, uow, data, idempotency_key=idempotency_key)
