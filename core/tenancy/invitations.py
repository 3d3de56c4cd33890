"""Invitations to an org: sent and revoked by its managers, accepted or declined by the invitee."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Select, func, select, text, update

from core.context import TenantContext
from core.errors import Conflict, Gone, NotFound
from core.idempotency import idempotent_operation
from core.pagination import Page, PageRequest
from core.registry.changes import tools_changed
from core.scoping import keyset_page, one_or, where_given
from core.tenancy.models import Invitation, Org, OrgMember, Person
from core.tenancy.presenters import member_out, person_ref
from core.tenancy.queries import READ, WRITE, administered_org, person_id_by_slug
from core.tenancy.schemas import InvitationIn, InvitationOut, MemberOut, OrgRef
from core.uow import UnitOfWork
from core.utilities import utcnow


async def _invitation_out(uow: UnitOfWork, inv: Invitation) -> InvitationOut:
    org = await uow.session.get(Org, inv.org_id)
    invitee = await uow.session.get(Person, inv.invitee_person_id) if inv.invitee_person_id else None
    inviter = await uow.session.get(Person, inv.invited_by) if inv.invited_by else None
    assert org is not None
    status = inv.status
    if status == "pending" and inv.expires_at <= utcnow():
        status = "expired"
    return InvitationOut(
        id=inv.id,
        org=OrgRef.model_validate(org),
        email=inv.email,
        invitee=person_ref(invitee) if invitee else None,
        role=inv.role,
        status=status,
        invited_by=person_ref(inviter) if inviter else None,
        expires_at=inv.expires_at,
        created_at=inv.created_at,
        responded_at=inv.responded_at,
    )


@idempotent_operation("invitations.create")
async def create_invitation(
    ctx: TenantContext, uow: UnitOfWork, data: InvitationIn, idempotency_key: str | None = None
) -> InvitationOut:
    org_id = administered_org(ctx)
    invitee: uuid.UUID | None
    if data.person:
        invitee = await person_id_by_slug(uow, data.person)
    else:
        found = (
            await uow.session.execute(text("SELECT platform.person_id_by_email(:e)"), {"e": data.email})
        ).scalar_one_or_none()
        invitee = uuid.UUID(str(found)) if found else None
    if invitee is not None:
        already = (
            await uow.session.execute(
                select(OrgMember.person_id).where(OrgMember.org_id == org_id, OrgMember.person_id == invitee)
            )
        ).first()
        if already:
            raise Conflict(
                "this person is already a member",
                code="already_member",
                hint="nothing to invite them to: change their role instead ([[tenancy.update_member]])",
            )
    inv = Invitation(
        org_id=org_id,
        email=data.email,
        invitee_person_id=invitee,
        role=data.role,
        invited_by=ctx.person_id,
        expires_at=utcnow() + dt.timedelta(days=data.expires_in_days),
    )
    uow.session.add(inv)
    await uow.session.flush()
    await uow.session.refresh(inv)
    uow.emit(
        "platform/invitation.created",
        {"invitation_id": inv.id, "email": inv.email, "invitee_person_id": invitee, "role": inv.role},
    )
    return await _invitation_out(uow, inv)


async def list_invitations(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, status: str | None = None
) -> Page[InvitationOut]:
    """The org's invitations (owner/admin)."""
    stmt = where_given(
        select(Invitation).where(Invitation.org_id == administered_org(ctx, READ)),
        (Invitation.status, status),
    )
    return await _invitation_page(uow, stmt, page, under=status)


async def list_my_invitations(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[InvitationOut]:
    """Pending invitations addressed to the caller, whichever context they act in."""
    stmt = select(Invitation).where(
        Invitation.invitee_person_id == ctx.person_id,
        Invitation.status == "pending",
        Invitation.expires_at > func.now(),
    )
    return await _invitation_page(uow, stmt, page)


async def _invitation_page(
    uow: UnitOfWork, stmt: Select[Invitation], page: PageRequest, under: str | None = None
) -> Page[InvitationOut]:
    rows = await keyset_page(
        uow, stmt, page, Invitation.created_at, Invitation.id, descending=True, under=under
    )
    return Page[InvitationOut](
        items=[await _invitation_out(uow, inv) for inv in rows.items], next_cursor=rows.next_cursor
    )


async def revoke_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> InvitationOut:
    org_id = administered_org(ctx)
    not_found = NotFound(
        "no such invitation in this org",
        code="invitation_not_found",
        hint="list the org's invitations with [[tenancy.list_invitations]]",
    )
    inv = await one_or(
        uow,
        select(Invitation)
        .where(Invitation.id == invitation_id, Invitation.org_id == org_id)
        .with_for_update(),
        not_found,
    )
    if inv.status == "pending":
        inv.status, inv.responded_at = "revoked", utcnow()
        uow.emit("platform/invitation.revoked", {"invitation_id": inv.id})
    elif inv.status != "revoked":
        raise Conflict(
            f"the invitation is already {inv.status}",
            code="invitation_not_pending",
            hint="nothing to revoke; the org's invitations and their status: [[tenancy.list_invitations]]",
        )
    return await _invitation_out(uow, inv)


async def _my_pending_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> Invitation:
    not_found = NotFound(
        "no such invitation for you",
        code="invitation_not_found",
        hint="list yours with [[tenancy.list_my_invitations]]",
    )
    inv = await one_or(
        uow,
        select(Invitation)
        .where(Invitation.id == invitation_id, Invitation.invitee_person_id == ctx.person_id)
        .with_for_update(),
        not_found,
    )
    if inv.status != "pending":
        raise Conflict(
            f"the invitation is {inv.status}",
            code="invitation_not_pending",
            hint="it was already answered or revoked; to join, ask the org for a new invitation",
        )
    if inv.expires_at <= utcnow():
        raise Gone("the invitation has expired", code="invitation_expired", hint="ask for a new invitation")
    return inv


async def accept_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> MemberOut:
    ctx.require(WRITE)
    inv = await _my_pending_invitation(ctx, uow, invitation_id)
    # RLS lets a person insert their own membership only while this invitation is pending.
    uow.session.add(OrgMember(org_id=inv.org_id, person_id=ctx.person_id, role=inv.role))
    await uow.session.flush()
    inv.status, inv.responded_at = "accepted", utcnow()
    await uow.session.flush()
    uow.emit("platform/invitation.accepted", {"invitation_id": inv.id}, org_id=inv.org_id)
    uow.emit(
        "platform/org_member.added",
        {"member_person_id": ctx.person_id, "role": inv.role, "via": "invitation"},
        org_id=inv.org_id,
    )
    tools_changed(uow, "org_member.added", persons=[ctx.person_id])
    return await member_out(uow, inv.org_id, ctx.person_id, ctx.person_id)


async def decline_invitation(ctx: TenantContext, uow: UnitOfWork, invitation_id: uuid.UUID) -> InvitationOut:
    ctx.require(WRITE)
    inv = await _my_pending_invitation(ctx, uow, invitation_id)
    inv.status, inv.responded_at = "declined", utcnow()
    await uow.session.flush()
    uow.emit("platform/invitation.declined", {"invitation_id": inv.id}, org_id=inv.org_id)
    return await _invitation_out(uow, inv)


async def expire_invitations(uow: UnitOfWork) -> int:
    result = await uow.session.execute(
        update(Invitation)
        .where(Invitation.status == "pending", Invitation.expires_at <= func.now())
        .values(status="expired")
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
