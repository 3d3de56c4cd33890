"""Orgs: created, read, changed, deleted and handed to another owner."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import aliased

from core.context import Role, TenantContext
from core.errors import Conflict, NotFound, PermissionDenied
from core.idempotency import idempotent_operation
from core.pagination import Page, PageRequest
from core.presenting import from_row
from core.registry.changes import tools_changed
from core.scoping import keyset_rows, map_page
from core.tenancy.models import Org, OrgMember, Person
from core.tenancy.presenters import person_ref
from core.tenancy.queries import READ, WRITE, member_by_slug
from core.tenancy.schemas import OrgIn, OrgOut, OrgUpdateIn, OwnershipOfferOut, TransferIn
from core.uow import UnitOfWork
from core.utilities import utcnow


def _org_view(org: Org, owner: Person, role: str, offered: Person | None = None) -> OrgOut:
    offer = (
        OwnershipOfferOut(person=person_ref(offered), offered_at=org.offered_at)
        if offered is not None and org.offered_at is not None
        else None
    )
    return from_row(OrgOut, org, owner=person_ref(owner), role=role, ownership_offer=offer)


async def _org_out(uow: UnitOfWork, org: Org, role: str) -> OrgOut:
    owner = await uow.session.get(Person, org.owner_id)
    assert owner is not None
    offered = await uow.session.get(Person, org.offered_owner_id) if org.offered_owner_id else None
    return _org_view(org, owner, role, offered)


async def _current_org(ctx: TenantContext, uow: UnitOfWork, *, lock: bool = False) -> Org:
    """The context's org; `lock`: read for a change of its ownership, which every such change
    (offer, accept, withdraw, and a member's removal) takes in turn, each then reading what the
    one before it committed -- never a stale offer or owner."""
    org_id = ctx.require_org()
    if lock:
        stmt = (
            select(Org)
            .where(Org.id == org_id)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE: members may still be added
            .execution_options(populate_existing=True)
        )
        org = (await uow.session.execute(stmt)).scalar_one_or_none()
    else:
        org = await uow.session.get(Org, org_id)
    if org is None:
        raise NotFound(
            "this org no longer exists",
            code="org_not_found",
            hint="list your orgs with [[tenancy.list_orgs]]",
        )
    return org


@idempotent_operation("orgs.create")
async def create_org(
    ctx: TenantContext, uow: UnitOfWork, data: OrgIn, idempotency_key: str | None = None
) -> OrgOut:
    """Create an org; the caller becomes its owner."""
    ctx.require(WRITE)
    org = Org(id=uuid.uuid4(), slug=data.slug, name=data.name, owner_id=ctx.person_id, settings={})
    uow.session.add(org)
    await uow.session.flush()
    uow.session.add(OrgMember(org_id=org.id, person_id=ctx.person_id, role=Role.OWNER.value))
    await uow.session.flush()
    await uow.session.refresh(org)
    uow.emit("platform/org.created", {"slug": org.slug, "name": org.name}, org_id=org.id)
    uow.emit(
        "platform/org_member.added",
        {"member_person_id": ctx.person_id, "role": Role.OWNER.value, "via": "create"},
        org_id=org.id,
    )
    return await _org_out(uow, org, Role.OWNER.value)


async def list_orgs(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[OrgOut]:
    """Orgs the person belongs to, whatever context the request acts in."""
    ctx.require(READ)
    owner, offered = aliased(Person), aliased(Person)
    stmt = (
        select(Org, OrgMember.role, owner, offered)
        .join(OrgMember, and_(OrgMember.org_id == Org.id, OrgMember.person_id == ctx.person_id))
        .join(owner, owner.id == Org.owner_id)
        .outerjoin(offered, offered.id == Org.offered_owner_id)
    )
    rows = await keyset_rows(uow, stmt, page, Org.slug)
    return map_page(rows, lambda r: _org_view(r[0], r[2], r[1], r[3]))


async def get_org(ctx: TenantContext, uow: UnitOfWork) -> OrgOut:
    ctx.require(READ)
    org = await _current_org(ctx, uow)
    assert ctx.role is not None
    return await _org_out(uow, org, ctx.role.value)


async def update_org(ctx: TenantContext, uow: UnitOfWork, data: OrgUpdateIn) -> OrgOut:
    ctx.require(WRITE)
    role = ctx.require_role(Role.OWNER, Role.ADMIN)
    org = await _current_org(ctx, uow)
    changes: dict[str, Any] = {}
    if data.slug is not None and data.slug != org.slug:
        if role is not Role.OWNER:
            raise PermissionDenied(
                "only the owner can change the org's slug", code="insufficient_role", hint="ask the owner"
            )
        changes["slug"] = (org.slug, data.slug)
        org.slug = data.slug
    if data.name is not None and data.name != org.name:
        changes["name"] = (org.name, data.name)
        org.name = data.name
    if data.settings is not None and data.settings != org.settings:
        changes["settings"] = True
        org.settings = data.settings
    if changes:
        await uow.session.flush()
        await uow.session.refresh(org)
        uow.emit("platform/org.updated", {"changed": sorted(changes), "slug": org.slug})
    return await _org_out(uow, org, role.value)


async def delete_org(ctx: TenantContext, uow: UnitOfWork) -> None:
    """Delete the org and everything it owns. Owner only, from a signed-in session."""
    ctx.require(WRITE)
    ctx.require_human()
    ctx.require_role(Role.OWNER)
    org = await _current_org(ctx, uow)
    uow.emit("platform/org.deleted", {"slug": org.slug, "name": org.name})
    # Named now: once the org is gone, nothing says who belonged to it.
    members = await uow.session.execute(select(OrgMember.person_id).where(OrgMember.org_id == org.id))
    tools_changed(uow, "org.deleted", persons=list(members.scalars()), orgs=[org.id])
    await uow.session.delete(org)
    await uow.session.flush()


async def transfer_ownership(ctx: TenantContext, uow: UnitOfWork, data: TransferIn) -> OrgOut:
    """The owner offers the org to another member; it moves when they accept
    (`accept_ownership`). Offering again names the new member (one offer at a time)."""
    ctx.require(WRITE)
    ctx.require_human()
    ctx.require_role(Role.OWNER)
    org = await _current_org(ctx, uow, lock=True)
    if org.owner_id != ctx.person_id:  # it changed hands since this request's context was read
        raise _not_the_owner()
    target = await member_by_slug(ctx, uow, data.person)
    if target.person_id == ctx.person_id:
        raise Conflict(
            "you already own this org",
            code="already_owner",
            hint="name another member to offer the org to ([[tenancy.list_members]])",
        )
    if org.offered_owner_id != target.person_id:
        if org.offered_owner_id is not None:
            _offer_ended(uow, org, ctx, "superseded")
        org.offered_owner_id, org.offered_at = target.person_id, utcnow()
        await uow.session.flush()
        await uow.session.refresh(org)  # `updated_at` is the database's
        uow.emit(
            "platform/org.ownership_offered",
            {"from_person_id": ctx.person_id, "to_person_id": target.person_id},
        )
    return await _org_out(uow, org, Role.OWNER.value)


async def accept_ownership(ctx: TenantContext, uow: UnitOfWork) -> OrgOut:
    """The member the org was offered to takes it; the former owner stays on as admin."""
    ctx.require(WRITE)
    ctx.require_human()
    org = await _current_org(ctx, uow, lock=True)
    if org.offered_owner_id != ctx.person_id:
        raise _no_offer(ctx)
    old_owner, old_role = org.owner_id, ctx.role.value if ctx.role else Role.MEMBER.value
    # Demote first: the one-owner index is checked per row, the owner FK only at commit.
    await uow.session.execute(
        update(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.person_id == old_owner)
        .values(role=Role.ADMIN.value, updated_at=func.now())
    )
    await uow.session.execute(
        update(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.person_id == ctx.person_id)
        .values(role=Role.OWNER.value, updated_at=func.now())
    )
    org.owner_id, org.offered_owner_id, org.offered_at = ctx.person_id, None, None
    await uow.session.flush()
    await uow.session.refresh(org)
    uow.emit(
        "platform/org.ownership_transferred", {"from_person_id": old_owner, "to_person_id": ctx.person_id}
    )
    uow.emit(
        "platform/org_member.role_changed",
        {"member_person_id": old_owner, "from": Role.OWNER.value, "to": Role.ADMIN.value},
    )
    uow.emit(
        "platform/org_member.role_changed",
        {"member_person_id": ctx.person_id, "from": old_role, "to": Role.OWNER.value},
    )
    tools_changed(uow, "org.ownership_transferred", persons=[old_owner, ctx.person_id])
    return await _org_out(uow, org, Role.OWNER.value)


async def withdraw_ownership_offer(ctx: TenantContext, uow: UnitOfWork) -> OrgOut:
    """End the offer: the owner withdraws it, or the member it names declines it."""
    ctx.require(WRITE)
    ctx.require_human()
    org = await _current_org(ctx, uow, lock=True)
    if org.offered_owner_id is None or ctx.person_id not in (org.owner_id, org.offered_owner_id):
        raise _no_offer(ctx)
    _offer_ended(uow, org, ctx, "declined" if org.offered_owner_id == ctx.person_id else "withdrawn")
    org.offered_owner_id, org.offered_at = None, None
    await uow.session.flush()
    await uow.session.refresh(org)
    assert ctx.role is not None
    return await _org_out(uow, org, ctx.role.value)


def _offer_ended(uow: UnitOfWork, org: Org, ctx: TenantContext, reason: str) -> None:
    uow.emit(
        "platform/org.ownership_offer_ended",
        {"to_person_id": org.offered_owner_id, "by_person_id": ctx.person_id, "reason": reason},
    )


def _not_the_owner() -> PermissionDenied:
    return PermissionDenied(
        "you no longer own this org",
        code="insufficient_role",
        hint="ask the org's owner to do it",
    )


def _no_offer(ctx: TenantContext) -> NotFound:
    return NotFound(
        f"no ownership offer of {ctx.org_slug!r} names you",
        code="no_ownership_offer",
        hint="the owner offers the org to a member first ([[tenancy.transfer_ownership]])",
    )
