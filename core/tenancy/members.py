"""An org's members: listed, given another role, removed or leaving. People join an org by
accepting an invitation (`core.tenancy.invitations`), never by being added: joining is theirs to
decide."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import InstrumentedAttribute

from core.context import Role, TenantContext
from core.errors import PermissionDenied
from core.outbox import Event
from core.pagination import Page, PageRequest
from core.registry.changes import tools_changed
from core.scoping import keyset_rows, map_page
from core.tenancy.models import Delegation, Org, OrgMember, Person
from core.tenancy.presenters import member_out, person_out
from core.tenancy.queries import READ, WRITE, administered_org, member_by_slug
from core.tenancy.schemas import MemberOut, MemberUpdateIn
from core.uow import UnitOfWork


async def list_members(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[MemberOut]:
    ctx.require(READ)
    org_id = ctx.require_org()
    stmt = (
        select(Person, OrgMember.role, OrgMember.created_at)
        .join(OrgMember, OrgMember.person_id == Person.id)
        .where(OrgMember.org_id == org_id)
    )
    rows = await keyset_rows(
        uow, stmt, page, OrgMember.created_at, OrgMember.person_id, key=lambda r: (r[2], r[0].id)
    )
    return map_page(
        rows, lambda r: MemberOut(person=person_out(r[0], ctx.person_id), role=r[1], joined_at=r[2])
    )


async def update_member(
    ctx: TenantContext, uow: UnitOfWork, person_slug: str, data: MemberUpdateIn
) -> MemberOut:
    org_id = administered_org(ctx)
    target = await member_by_slug(ctx, uow, person_slug)
    if target.role == Role.OWNER.value:
        raise PermissionDenied(
            "the owner's role cannot be changed",
            code="cannot_change_owner",
            hint="the owner can transfer ownership ([[tenancy.transfer_ownership]])",
        )
    if target.role != data.role:
        await uow.session.execute(
            update(OrgMember)
            .where(OrgMember.org_id == org_id, OrgMember.person_id == target.person_id)
            .values(role=data.role, updated_at=func.now())
        )
        uow.emit(
            "platform/org_member.role_changed",
            {"member_person_id": target.person_id, "from": target.role, "to": data.role},
        )
        tools_changed(uow, "org_member.role_changed", persons=[target.person_id])
    return await member_out(uow, org_id, target.person_id, ctx.person_id)


async def remove_member(ctx: TenantContext, uow: UnitOfWork, person_slug: str) -> MemberOut:
    """Remove a member (owner/admin), or leave the org yourself (anyone but the owner).
    Returns the membership as it was."""
    ctx.require(WRITE)
    org_id = ctx.require_org()
    target = await member_by_slug(ctx, uow, person_slug)
    leaving = target.person_id == ctx.person_id
    if target.role == Role.OWNER.value:
        raise PermissionDenied(
            "the owner cannot leave or be removed" if leaving else "the owner cannot be removed",
            code="owner_cannot_leave" if leaving else "cannot_remove_owner",
            hint="the owner can transfer ownership first ([[tenancy.transfer_ownership]])",
        )
    if not leaving:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    removed = await member_out(uow, org_id, target.person_id, ctx.person_id)
    # An offer of the org to someone who no longer belongs to it ends with the membership. The
    # org's row is taken first, as an offer takes it (`core.tenancy.orgs`): an offer made while
    # this removal runs then sees it committed and is refused, rather than naming a former member.
    # The offer ends before the membership goes: a member leaving loses the org's context (and
    # with it the org's row) the moment their own row is deleted.
    await uow.session.execute(select(Org.id).where(Org.id == org_id).with_for_update(key_share=True))
    offer_ended = await uow.session.execute(
        update(Org)
        .where(Org.id == org_id, Org.offered_owner_id == target.person_id)
        .values(offered_owner_id=None, offered_at=None)
        .returning(Org.id)
    )
    await uow.session.execute(
        delete(OrgMember).where(OrgMember.org_id == org_id, OrgMember.person_id == target.person_id)
    )
    if offer_ended.first() is not None:
        uow.emit(
            "platform/org.ownership_offer_ended",
            {"to_person_id": target.person_id, "by_person_id": ctx.person_id, "reason": "membership_ended"},
        )
    uow.emit(
        "platform/org_member.removed",
        {"member_person_id": target.person_id, "role": target.role, "via": "left" if leaving else "removed"},
    )
    tools_changed(uow, "org_member.removed", persons=[target.person_id])
    return removed


# Why a delegation ended when its person left the org: in its event, and in its row if it says.
MEMBERSHIP_ENDED = "membership_ended"


async def revoke_delegations_of_leaver(
    event: Event,
    uow: UnitOfWork,
    model: type[Delegation],
    announce: str,
    *,
    reason_column: InstrumentedAttribute[str | None] | None = None,
    **payload: InstrumentedAttribute[Any],
) -> int:
    """On `platform/org_member.removed`: revoke what the removed person let act for them in that
    org and emit `announce` for each, its data the `payload` columns and the reason. Membership is
    re-checked on every request anyway; this makes the delegations visibly dead. Idempotent;
    returns how many it revoked."""
    if event.org_id is None:
        return 0
    member = uuid.UUID(str(event.data["member_person_id"]))
    # Delegations are their person's rows: act as the removed person, within this org only.
    await uow.act_as_service(member, event.org_id)
    reason = {reason_column.key: MEMBERSHIP_ENDED} if reason_column is not None else {}
    revoked = (
        await uow.session.execute(
            update(model)
            .where(model.person_id == member, model.org_id == event.org_id, model.revoked_at.is_(None))
            .values(revoked_at=func.now(), **reason)
            .returning(*payload.values())
        )
    ).all()
    for row in revoked:
        data = {**dict(zip(payload, row, strict=True)), "reason": MEMBERSHIP_ENDED}
        uow.emit(announce, data, person_id=member, org_id=event.org_id)
    return len(revoked)
