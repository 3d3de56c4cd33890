"""Platform admin: persons, orgs, suspension, the audit log and dead letters under /v1/admin/... (the billing
admin routes — grants, refunds, peers — live in servers/api/billing.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Body, Path, Query

from core import admin
from core.admin import schemas
from core.pagination import Page
from servers.api.deps import CallerDep, FeatureRouter, PageDep

router = FeatureRouter(tags=["admin"])

NOT_ROUTES = {
    "admin.set_platform_admin": "operator-only (`atlilith admin promote|demote`): needs database access",
}
PersonRef = Annotated[str, Path(min_length=1, max_length=64, description="The person's handle or id.")]
Search = Annotated[str | None, Query(max_length=100, description="Part of a handle, email or name.")]


@router.get("/v1/admin/persons", response_model=Page[schemas.AdminPersonOut])
async def list_persons(
    caller: CallerDep,
    page: PageDep,
    q: Search = None,
    status: Annotated[schemas.PersonStatus | None, Query()] = None,
) -> Page[schemas.AdminPersonOut]:
    """Every person on the platform, newest first (platform admins)."""
    return await caller.call_person_level(admin.list_persons, page, q, status)


@router.get("/v1/admin/persons/{person}", response_model=schemas.AdminPersonDetail)
async def get_person(person: PersonRef, caller: CallerDep) -> schemas.AdminPersonDetail:
    """A person's status, orgs and roles, live sessions and API keys (platform admins)."""
    return await caller.call_person_level(admin.get_person, person)


@router.post("/v1/admin/persons/{person}/suspend", response_model=schemas.SuspensionOut)
async def suspend_person(
    person: PersonRef, data: schemas.SuspendIn, caller: CallerDep
) -> schemas.SuspensionOut:
    """Suspend a person: their sessions end now and every credential of theirs is refused
    (platform admins; not yourself, not another platform admin). Audited."""
    return await caller.call_person_level(admin.suspend_person, person, data)


@router.post("/v1/admin/persons/{person}/reactivate", response_model=schemas.SuspensionOut)
async def reactivate_person(
    person: PersonRef, caller: CallerDep, data: Annotated[schemas.ReactivateIn | None, Body()] = None
) -> schemas.SuspensionOut:
    """Lift a suspension: API keys work again; the person signs in again. Audited."""
    return await caller.call_person_level(admin.reactivate_person, person, data or schemas.ReactivateIn())


@router.get("/v1/admin/orgs", response_model=Page[schemas.AdminOrgOut])
async def list_orgs(
    caller: CallerDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=100, description="Part of a slug or name.")] = None,
) -> Page[schemas.AdminOrgOut]:
    """Every org with its owner and member count, newest first (platform admins)."""
    return await caller.call_person_level(admin.list_orgs, page, q)


@router.get("/v1/admin/audit", response_model=Page[schemas.AuditEntryOut])
async def list_audit(
    caller: CallerDep,
    page: PageDep,
    actor: Annotated[
        str | None, Query(max_length=64, description="A handle, a person id, or `operator`.")
    ] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="`person.suspend`, or a prefix: `person.*`.")
    ] = None,
    target_type: Annotated[
        str | None, Query(max_length=32, description="`person`, `org`, `job`, `peer`.")
    ] = None,
    target_id: Annotated[
        str | None, Query(max_length=64, description="The target's id (a person's handle, an org's slug).")
    ] = None,
    since: Annotated[dt.datetime | None, Query(description="From this instant (inclusive).")] = None,
    until: Annotated[dt.datetime | None, Query(description="Before this instant.")] = None,
) -> Page[schemas.AuditEntryOut]:
    """The audit log, newest first: who did what to whom, when, with the trace id (platform admins)."""
    return await caller.call_person_level(
        admin.list_audit, page, actor, action, target_type, target_id, since, until
    )


@router.get("/v1/admin/dead-letters", response_model=Page[schemas.DeadLetterOut])
async def list_dead_letters(
    caller: CallerDep,
    page: PageDep,
    handler: Annotated[str | None, Query(max_length=200, description="Only this handler's.")] = None,
) -> Page[schemas.DeadLetterOut]:
    """Event deliveries a handler gave up on, most recent first, with the last error (a process
    that died handling one counts as an attempt) (platform admins)."""
    return await caller.call_person_level(admin.list_dead_letters, page, handler)


@router.post("/v1/admin/dead-letters/redrive", response_model=schemas.RedriveOut)
async def redrive_dead_letters(data: schemas.RedriveIn, caller: CallerDep) -> schemas.RedriveOut:
    """Retry a handler's dead deliveries (or one event's) with fresh attempts. Repeating it
    re-drives nothing more. Audited (platform admins)."""
    return await caller.call_person_level(admin.redrive_dead_letters, data)
