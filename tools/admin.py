"""Toolset `admin` (off by default): the platform operator's tools — persons, orgs, suspension,
the audit log, credit grants. Every tool refuses callers who are not platform admins."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import Field

from core import admin as core_admin  # aliased: `admin` is this module's toolset
from core import billing
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
from core.audit import ADMIN_READ, ADMIN_WRITE
from core.billing.schemas import GrantIn, GrantOut
from core.pagination import Page
from tools.base import FIRST_PAGE, Flat, IdempotencyArg, PageArg, ToolRuntime, Toolset

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
    read_scope=ADMIN_READ,
    write_scope=ADMIN_WRITE,
)


@admin.tool(title="List persons", read_only=True)
async def admin_persons(
    rt: ToolRuntime,
    q: SearchArg = None,
    status: Annotated[PersonStatus | None, Field(description="Only persons in this state.")] = None,
    page: PageArg = FIRST_PAGE,
) -> Page[AdminPersonOut]:
    """Platform admins: every person on the platform, newest first, with status and whether they are
    platform admins. `q` matches handle, email or name. Read-only, free."""
    return await rt.call_person_level(core_admin.list_persons, page, q, status)


@admin.tool(title="Get a person", read_only=True)
async def admin_person_get(rt: ToolRuntime, person: PersonArg) -> AdminPersonDetail:
    """Platform admins: one person by handle or id — status (and suspension reason), orgs and roles,
    live sessions and API keys. Read-only, free."""
    return await rt.call_person_level(core_admin.get_person, person)


@admin.tool(title="Suspend a person", read_only=False, destructive=True, idempotent=True)
async def admin_person_suspend(rt: ToolRuntime, person: PersonArg, fields: Flat[SuspendIn]) -> SuspensionOut:
    """Platform admins: suspend a person. Their sessions end now and every token and API key of
    theirs is refused from the next call on, everywhere. A reason is required and audited. Not
    yourself, not another platform admin. Repeating it changes nothing. Free."""
    return await rt.call_person_level(core_admin.suspend_person, person, fields)


@admin.tool(title="Reactivate a person", read_only=False, idempotent=True)
async def admin_person_reactivate(
    rt: ToolRuntime,
    person: PersonArg,
    fields: Flat[ReactivateIn],
) -> SuspensionOut:
    """Platform admins: lift a person's suspension. Their API keys work again at once; they sign in
    again (suspension ended their sessions). Audited. Repeating it changes nothing. Free."""
    return await rt.call_person_level(core_admin.reactivate_person, person, fields)


@admin.tool(title="List orgs", read_only=True)
async def admin_orgs(
    rt: ToolRuntime,
    q: Annotated[str | None, Field(description="Part of a slug or name.", max_length=100)] = None,
    page: PageArg = FIRST_PAGE,
) -> Page[AdminOrgOut]:
    """Platform admins: every org, newest first, with owner and member count. `q` matches slug or
    name. Read-only, free."""
    return await rt.call_person_level(core_admin.list_orgs, page, q)


@admin.tool(title="Audit log", read_only=True)
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
    page: PageArg = FIRST_PAGE,
) -> Page[AuditEntryOut]:
    """Platform admins: the audit log, newest first — who (actor, credential), what (action, target,
    details), when, and the trace id. Filter by actor (handle, id or `operator`), action
    (`person.suspend` or a prefix `person.*`), target and time range. Read-only, free."""
    return await rt.call_person_level(
        core_admin.list_audit, page, actor, action, target_type, target_id, since, until
    )


@admin.tool(title="Dead letters", read_only=True)
async def admin_dead_letters(
    rt: ToolRuntime,
    handler: Annotated[str | None, Field(description="Only this handler's.", max_length=200)] = None,
    page: PageArg = FIRST_PAGE,
) -> Page[DeadLetterOut]:
    """Platform admins: event deliveries a handler gave up on after its attempts (a process that
    died handling one counts), most recent first, with the last error. Filter by handler. Read-only,
    free."""
    return await rt.call_person_level(core_admin.list_dead_letters, page, handler)


@admin.tool(title="Re-drive dead letters", read_only=False, idempotent=True)
async def admin_dead_letters_redrive(
    rt: ToolRuntime,
    fields: Flat[RedriveIn],
) -> RedriveOut:
    """Platform admins: retry a handler's dead deliveries — all of them, or one event's — with fresh
    attempts (fix the cause first). Repeating it re-drives nothing more. Audited. Free."""
    return await rt.call_person_level(core_admin.redrive_dead_letters, fields)


@admin.tool(title="Grant credits", read_only=False)
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
    """Platform admins: grant credits to a person's personal context (`to_person`) or to an org
    (`to_org`) — exactly one — optionally expiring. Audited. Pass `idempotency_key` so a retry never
    grants twice."""
    data = GrantIn(person=to_person, org=to_org, credits=credits, expires_at=expires_at, memo=memo)
    return await rt.call_person_level(billing.grant_credits, data, idempotency_key=idempotency_key)
