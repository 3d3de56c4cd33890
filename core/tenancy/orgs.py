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
from core.tenancy.schemas import OrgIn, OrgOut, OrgUpdateIn, TransferIn
from core.uow import UnitOfWork


def _org_view(org: Org, owner: Person, role: str) -> OrgOut:
    return from_row(OrgOut, org, owner=person_ref(owner), role=role)


async def _org_out(uow: UnitOfWork, org: Org, role: str) -> OrgOut:
    owner = await uow.session.get(Person, org.owner_id)
    assert owner is not None
    return _org_view(org, owner, role)


async def _current_org(ctx: TenantContext, uow: UnitOfWork) -> Org:
    org_id = ctx.require_org()
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
    owner = aliased(Person)
    stmt = (
        select(Org, OrgMember.role, owner)
        .join(OrgMember, and_(OrgMember.org_id == Org.id, OrgMember.person_id == ctx.person_id))
        .join(owner, owner.id == Org.owner_id)
    )
    rows = await keyset_rows(uow, stmt, page, Org.slug)
    return map_page(rows, lambda r: _org_view(r[0], r[2], r[1]))


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
    """The owner hands the org to another member; the former owner stays on as admin."""
    ctx.require(WRITE)
    ctx.require_human()
    ctx.require_role(Role.OWNER)
    org = await _current_org(ctx, uow)
    target = await member_by_slug(ctx, uow, data.person)
    if target.person_id == ctx.person_id:
        raise Conflict("you already own this org", code="already_owner")
    old_role = target.role
    # Demote first: the one-owner index is checked per row, the owner FK only at commit.
    await uow.session.execute(
        update(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.person_id == ctx.person_id)
        .values(role=Role.ADMIN.value, updated_at=func.now())
    )
    await uow.session.execute(
        update(OrgMember)
        .where(OrgMember.org_id == org.id, OrgMember.person_id == target.person_id)
        .values(role=Role.OWNER.value, updated_at=func.now())
    )
    org.owner_id = target.person_id
    await uow.session.flush()
    await uow.session.refresh(org)
    uow.emit(
        "platform/org.ownership_transferred",
        {"from_person_id": ctx.person_id, "to_person_id": target.person_id},
    )
    uow.emit(
        "platform/org_member.role_changed",
        {"member_person_id": ctx.person_id, "from": Role.OWNER.value, "to": Role.ADMIN.value},
    )
    uow.emit(
        "platform/org_member.role_changed",
        {"member_person_id": target.person_id, "from": old_role, "to": Role.OWNER.value},
    )
    tools_changed(uow, "org.ownership_transferred", persons=[ctx.person_id, target.person_id])
    return await _org_out(uow, org, Role.ADMIN.value)
