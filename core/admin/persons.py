"""Persons across tenants: list, look at one, suspend and reactivate (audited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, or_, select, update

from core import audit
from core.admin.lookup import find_person, like
from core.admin.schemas import (
    AdminMembershipOut,
    AdminPersonDetail,
    AdminPersonOut,
    PersonStatus,
    ReactivateIn,
    SuspendIn,
    SuspensionOut,
)
from core.context import TenantContext
from core.errors import PermissionDenied
from core.observability import get_logger
from core.pagination import Page, PageRequest
from core.registry.changes import tools_changed
from core.scoping import keyset_page, map_page
from core.tenancy.models import ApiKey, AuthSession, Org, OrgMember, Person
from core.uow import UnitOfWork
from core.utilities import utcnow

log = get_logger("atlilith.admin")


async def list_persons(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    q: str | None = None,
    status: PersonStatus | None = None,
) -> Page[AdminPersonOut]:
    """Every person on the platform, newest first; `q` matches handle, email or name."""
    await audit.require_platform_admin(ctx, uow, write=False)
    stmt = select(Person)
    if q and q.strip():
        pattern = like(q.strip())
        stmt = stmt.where(
            or_(Person.slug.ilike(pattern), Person.email.ilike(pattern), Person.display_name.ilike(pattern))
        )
    if status is not None:
        stmt = stmt.where(Person.status == status)
    rows = await keyset_page(
        uow, stmt, page, Person.created_at, Person.id, descending=True, under=(q, status)
    )
    return map_page(rows, AdminPersonOut.model_validate)


async def get_person(ctx: TenantContext, uow: UnitOfWork, person: str) -> AdminPersonDetail:
    """One person (by handle or id): status, orgs and roles, live sessions and API keys."""
    await audit.require_platform_admin(ctx, uow, write=False)
    found = await find_person(uow, person)
    now = utcnow()
    memberships = (
        await uow.session.execute(
            select(Org.id, Org.slug, Org.name, OrgMember.role)
            .join(OrgMember, OrgMember.org_id == Org.id)
            .where(OrgMember.person_id == found.id)
            .order_by(Org.slug)
        )
    ).all()
    sessions = (
        await uow.session.execute(
            select(func.count())
            .select_from(AuthSession)
            .where(
                AuthSession.person_id == found.id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
        )
    ).scalar_one()
    keys = (
        await uow.session.execute(
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.person_id == found.id,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now),
            )
        )
    ).scalar_one()
    return AdminPersonDetail(
        **AdminPersonOut.model_validate(found).model_dump(),
        orgs=[AdminMembershipOut(org_id=i, org_slug=s, org_name=n, role=r) for i, s, n, r in memberships],
        active_sessions=int(sessions),
        active_api_keys=int(keys),
    )


async def suspend_person(ctx: TenantContext, uow: UnitOfWork, person: str, data: SuspendIn) -> SuspensionOut:
    """Suspend a person now: every credential of theirs is refused from the next request on.
    Suspending a suspended person changes nothing (`changed: false`)."""
    await audit.require_platform_admin(ctx, uow)
    target = await find_person(uow, person, lock=True)
    if target.id == ctx.person_id:
        raise PermissionDenied(
            "you cannot suspend yourself",
            code="cannot_suspend_self",
            hint="another platform admin, or the operator, can",
        )
    if target.is_platform_admin:
        raise PermissionDenied(
            "a platform admin cannot be suspended",
            code="cannot_suspend_admin",
            hint="the operator demotes them first: `atlilith admin demote <handle>`",
        )
    if target.status == "suspended":
        return SuspensionOut(person=AdminPersonOut.model_validate(target), changed=False)
    now = utcnow()
    target.status, target.suspended_at, target.suspension_reason = "suspended", now, data.reason
    revoked = await uow.session.execute(
        update(AuthSession)
        .where(AuthSession.person_id == target.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="suspended")
    )
    sessions = int(revoked.rowcount or 0)  # type: ignore[attr-defined]
    details = {"slug": target.slug, "reason": data.reason, "sessions_revoked": sessions}
    await _status_changed(ctx, uow, target, "admin/person.suspended", "person.suspend", data.reason, details)
    log.info("person_suspended", person_id=str(target.id), by=str(ctx.person_id), sessions=sessions)
    return SuspensionOut(
        person=AdminPersonOut.model_validate(target), changed=True, sessions_revoked=sessions
    )


async def reactivate_person(
    ctx: TenantContext, uow: UnitOfWork, person: str, data: ReactivateIn
) -> SuspensionOut:
    """Lift a suspension: API keys work again at once; the person signs in again (suspension
    ended their sessions). Reactivating an active person changes nothing (`changed: false`)."""
    await audit.require_platform_admin(ctx, uow)
    target = await find_person(uow, person, lock=True)
    if target.status == "active":
        return SuspensionOut(person=AdminPersonOut.model_validate(target), changed=False)
    details = {
        "slug": target.slug,
        "reason": data.reason,
        "suspended_at": target.suspended_at,
        "suspension_reason": target.suspension_reason,
    }
    target.status, target.suspended_at, target.suspension_reason = "active", None, None
    await _status_changed(
        ctx, uow, target, "admin/person.reactivated", "person.reactivate", data.reason, details
    )
    log.info("person_reactivated", person_id=str(target.id), by=str(ctx.person_id))
    return SuspensionOut(person=AdminPersonOut.model_validate(target), changed=True)


async def _status_changed(
    ctx: TenantContext,
    uow: UnitOfWork,
    target: Person,
    event: str,
    action: str,
    reason: str | None,
    details: dict[str, Any],
) -> None:
    """What every change of a person's status owes: the event (`admin/person.<done>`, for the
    person, not in the admin's context), their tool lists refreshed, the audit entry `action`."""
    await uow.session.flush()
    await uow.session.refresh(target)
    done = event.rsplit(".", 1)[1]
    uow.emit(
        event,
        {f"{done}_person_id": target.id, "reason": reason, "by_person_id": ctx.person_id},
        person_id=target.id,
        org_id=None,
    )
    tools_changed(uow, f"person.{done}", persons=[target.id])
    await audit.record(uow, ctx, action, "person", target.id, details)
