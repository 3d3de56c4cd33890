"""Platform admin: look at persons and orgs across tenants, suspend and reactivate persons, read
the audit log. Every operation first re-reads that the caller is a platform admin (a flag on
the person's row, never a token claim or an org role), then works in system mode. Every change
writes an audit entry in its own transaction.

Suspension rules: a reason is required; the person's sessions are revoked (their access and
refresh tokens stop at once; a reactivated person signs in again), their API keys are refused
while suspended and work again after reactivation (`core.auth` checks the status on every
request). Nobody suspends themself, and an admin cannot suspend another platform admin: only
the operator, who has database access, demotes an admin first (`atlilith admin demote`).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, or_, select, update

from core import audit
from core.admin.schemas import (
    AdminMembershipOut,
    AdminOrgOut,
    AdminPersonDetail,
    AdminPersonOut,
    AuditEntryOut,
    DeadLetterOut,
    PersonStatus,
    PromotionOut,
    ReactivateIn,
    RedriveIn,
    RedriveOut,
    SuspendIn,
    SuspensionOut,
)
from core.audit import AuditEntry
from core.context import TenantContext
from core.errors import Conflict, FieldIssue, NotFound, PermissionDenied, ValidationFailed
from core.events import redrive_dead
from core.observability import get_logger
from core.outbox import deliveries_table, outbox_table
from core.pagination import Page, PageRequest
from core.presenting import from_row
from core.registry.changes import tools_changed
from core.scoping import keyset_page, keyset_rows, map_page, one_or
from core.tenancy.models import ApiKey, AuthSession, Org, OrgMember, Person
from core.uow import Database, UnitOfWork
from core.utilities import utcnow

log = get_logger("atlilith.admin")


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref.strip())
    except ValueError:
        return None


async def _person(uow: UnitOfWork, ref: str, *, lock: bool = False) -> Person:
    """A person by id or handle."""
    pid = _as_uuid(ref)
    stmt = select(Person).where(Person.id == pid if pid else Person.slug == ref.strip().lower())
    not_found = NotFound(
        f"no person {ref!r}",
        code="person_not_found",
        hint="pass a handle or a person id; search with [[admin.list_persons]]",
    )
    return await one_or(uow, stmt.with_for_update() if lock else stmt, not_found)


# --- persons -----------------------------------------------------------------------------------------


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
        pattern = _like(q.strip())
        stmt = stmt.where(
            or_(Person.slug.ilike(pattern), Person.email.ilike(pattern), Person.display_name.ilike(pattern))
        )
    if status is not None:
        stmt = stmt.where(Person.status == status)
    rows = await keyset_page(uow, stmt, page, Person.created_at, Person.id, descending=True)
    return map_page(rows, AdminPersonOut.model_validate)


async def get_person(ctx: TenantContext, uow: UnitOfWork, person: str) -> AdminPersonDetail:
    """One person (by handle or id): status, orgs and roles, live sessions and API keys."""
    await audit.require_platform_admin(ctx, uow, write=False)
    found = await _person(uow, person)
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
    target = await _person(uow, person, lock=True)
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
    await uow.session.flush()
    await uow.session.refresh(target)
    uow.emit(
        "admin/person.suspended",
        {"suspended_person_id": target.id, "reason": data.reason, "by_person_id": ctx.person_id},
        person_id=target.id,
        org_id=None,
    )
    tools_changed(uow, "person.suspended", persons=[target.id])
    await audit.record(
        uow,
        ctx,
        "person.suspend",
        "person",
        target.id,
        {"slug": target.slug, "reason": data.reason, "sessions_revoked": sessions},
    )
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
    target = await _person(uow, person, lock=True)
    if target.status == "active":
        return SuspensionOut(person=AdminPersonOut.model_validate(target), changed=False)
    details = {
        "slug": target.slug,
        "reason": data.reason,
        "suspended_at": target.suspended_at,
        "suspension_reason": target.suspension_reason,
    }
    target.status, target.suspended_at, target.suspension_reason = "active", None, None
    await uow.session.flush()
    await uow.session.refresh(target)
    uow.emit(
        "admin/person.reactivated",
        {"reactivated_person_id": target.id, "reason": data.reason, "by_person_id": ctx.person_id},
        person_id=target.id,
        org_id=None,
    )
    tools_changed(uow, "person.reactivated", persons=[target.id])
    await audit.record(uow, ctx, "person.reactivate", "person", target.id, details)
    log.info("person_reactivated", person_id=str(target.id), by=str(ctx.person_id))
    return SuspensionOut(person=AdminPersonOut.model_validate(target), changed=True)


# --- orgs ----------------------------------------------------------------------------------------------


async def list_orgs(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, q: str | None = None
) -> Page[AdminOrgOut]:
    """Every org, newest first, with its owner and member count; `q` matches slug or name."""
    await audit.require_platform_admin(ctx, uow, write=False)
    members = select(func.count()).select_from(OrgMember).where(OrgMember.org_id == Org.id).scalar_subquery()
    stmt = select(Org, Person.slug, members).join(Person, Person.id == Org.owner_id)
    if q and q.strip():
        pattern = _like(q.strip())
        stmt = stmt.where(or_(Org.slug.ilike(pattern), Org.name.ilike(pattern)))
    rows = await keyset_rows(uow, stmt, page, Org.created_at, Org.id, descending=True)
    return map_page(
        rows,
        lambda r: AdminOrgOut(
            id=r[0].id,
            slug=r[0].slug,
            name=r[0].name,
            owner_id=r[0].owner_id,
            owner_slug=r[1],
            member_count=int(r[2]),
            created_at=r[0].created_at,
        ),
    )


# --- the audit log -------------------------------------------------------------------------------------


async def _target_ids(uow: UnitOfWork, target_type: str | None, target_id: str) -> list[str]:
    """Persons and orgs are logged by id; let the caller name them by handle or slug too (without
    a `target_type`, whatever the name may mean: the raw value, a person, an org)."""
    if (as_id := _as_uuid(target_id)) is not None:
        return [str(as_id)]
    ref = target_id.strip().lower()
    found = [target_id.strip()]
    if target_type in (None, "person"):
        pid = (await uow.session.execute(select(Person.id).where(Person.slug == ref))).scalar_one_or_none()
        found += [str(pid)] if pid else []
    if target_type in (None, "org"):
        oid = (await uow.session.execute(select(Org.id).where(Org.slug == ref))).scalar_one_or_none()
        found += [str(oid)] if oid else []
    return found


async def list_audit(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Page[AuditEntryOut]:
    """Audit entries, newest first. `actor`: a handle, a person id or `operator`; `action`:
    exact (`person.suspend`) or a prefix (`person.*`); `target_id` of a person or org may be
    its handle or slug; `since` inclusive, `until` exclusive."""
    await audit.require_platform_admin(ctx, uow, write=False)
    # an instant without an offset is read as UTC
    since = since.replace(tzinfo=dt.UTC) if since is not None and since.tzinfo is None else since
    until = until.replace(tzinfo=dt.UTC) if until is not None and until.tzinfo is None else until
    if since is not None and until is not None and since >= until:
        raise ValidationFailed(
            "`since` must be before `until`",
            code="invalid_time_range",
            errors=[FieldIssue("until", "not after since")],
        )
    stmt = select(AuditEntry)
    if actor:
        if actor.strip().lower() == audit.OPERATOR:
            stmt = stmt.where(AuditEntry.actor_kind == audit.OPERATOR)
        elif (pid := _as_uuid(actor)) is not None:
            stmt = stmt.where(AuditEntry.actor_person_id == pid)
        else:
            handle = actor.strip().lower()
            found = (
                await uow.session.execute(select(Person.id).where(Person.slug == handle))
            ).scalar_one_or_none()
            # the handle someone has now, or had when they acted
            stmt = stmt.where(
                or_(AuditEntry.actor_person_id == found, AuditEntry.actor_label == handle)
                if found
                else AuditEntry.actor_label == handle
            )
    if action:
        action = action.strip()
        if action.endswith(".*"):
            stmt = stmt.where(AuditEntry.action.startswith(action[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == action)
    if target_type:
        stmt = stmt.where(AuditEntry.target_type == target_type)
    if target_id:
        stmt = stmt.where(AuditEntry.target_id.in_(await _target_ids(uow, target_type, target_id)))
    if since is not None:
        stmt = stmt.where(AuditEntry.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.at < until)
    rows = await keyset_page(uow, stmt, page, AuditEntry.at, AuditEntry.id, descending=True)
    return map_page(rows, AuditEntryOut.model_validate)


# --- dead letters ---------------------------------------------------------------------------------------


async def list_dead_letters(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, handler: str | None = None
) -> Page[DeadLetterOut]:
    """Deliveries a handler gave up on after its attempts (a crash counts as one), most recent
    first, with the last error; re-drive them with [[admin.redrive_dead_letters]]."""
    await audit.require_platform_admin(ctx, uow, write=False)
    d, e = deliveries_table.c, outbox_table.c
    stmt = (
        select(d.event_id, e.name, d.handler, d.attempts, d.last_error, d.updated_at, e.created_at)
        .join_from(deliveries_table, outbox_table, e.id == d.event_id)
        .where(d.status == "dead")
    )
    if handler:
        stmt = stmt.where(d.handler == handler)
    rows = await keyset_rows(
        uow,
        stmt,
        page,
        d.updated_at,
        d.event_id,
        d.handler,
        descending=True,
        key=lambda r: (r.updated_at, r.event_id, r.handler),
    )
    return map_page(
        rows,
        lambda r: from_row(
            DeadLetterOut, r, event_name=r.name, failed_at=r.updated_at, event_created_at=r.created_at
        ),
    )


async def redrive_dead_letters(ctx: TenantContext, uow: UnitOfWork, data: RedriveIn) -> RedriveOut:
    """Give a handler's dead deliveries (or one event's) fresh attempts: back to pending, the
    relays woken. Repeating it re-drives nothing more (`redriven: 0`). Audited when it changed
    something."""
    await audit.require_platform_admin(ctx, uow)
    if data.event_id is not None:
        delivery = select(deliveries_table.c.status).where(
            deliveries_table.c.event_id == data.event_id, deliveries_table.c.handler == data.handler
        )
        not_found = NotFound(
            f"no delivery of event {data.event_id} to handler {data.handler!r}",
            code="delivery_not_found",
            hint="list what is dead with [[admin.list_dead_letters]]",
        )
        await one_or(uow, delivery, not_found)
    ids = await redrive_dead(uow, data.handler, data.event_id)
    if ids:
        details = {"count": len(ids), "event_id": data.event_id, "reason": data.reason}
        await audit.record(uow, ctx, "deliveries.redrive", "handler", data.handler, details)
        log.info("dead_letters_redriven", handler=data.handler, count=len(ids), by=str(ctx.person_id))
    return RedriveOut(handler=data.handler, event_id=data.event_id, redriven=len(ids))


# --- the operator (database access, no HTTP door) ---------------------------------------------------


async def set_platform_admin(db: Database, handle: str, admin: bool) -> PromotionOut:
    """`atlilith admin promote|demote <handle>`: how the first platform admin is made. Only
    someone with database access can run it; it is audited with the actor `operator`."""
    async with db.system() as uow:
        person = await _person(uow, handle, lock=True)
        if admin and person.status != "active":
            raise Conflict(
                f"{person.slug!r} is suspended",
                code="account_suspended",
                hint="reactivate the person first",
            )
        if person.is_platform_admin == admin:
            return PromotionOut(person=AdminPersonOut.model_validate(person), changed=False)
        person.is_platform_admin = admin
        await uow.session.flush()
        # The platform's own toolsets are listed to platform admins only.
        tools_changed(uow, "person.promoted" if admin else "person.demoted", persons=[person.id])
        await uow.session.refresh(person)
        await audit.record(
            uow,
            None,
            "person.promote" if admin else "person.demote",
            "person",
            person.id,
            {"slug": person.slug},
        )
        log.info("platform_admin_changed", person_id=str(person.id), admin=admin)
        return PromotionOut(person=AdminPersonOut.model_validate(person), changed=True)
