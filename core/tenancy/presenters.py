"""How tenancy rows are shown to a caller: persons, contexts, memberships."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from core.tenancy.models import Org, OrgMember, Person
from core.tenancy.schemas import ContextOut, MemberOut, OrgRef, PersonOut, PersonRef
from core.uow import UnitOfWork


def person_out(p: Person, viewer: uuid.UUID | None = None) -> PersonOut:
    """Emails are personal: co-members of an org must not be able to harvest each other's
    addresses. Only the person sees their own (viewer None = self)."""
    own = viewer is None or viewer == p.id
    return PersonOut(id=p.id, slug=p.slug, display_name=p.display_name, email=p.email if own else None)


def person_ref(p: Person) -> PersonRef:
    return PersonRef(id=p.id, slug=p.slug, display_name=p.display_name)


def context_out(ctx_org: Org | None, role: str | None) -> ContextOut:
    if ctx_org is None or role is None:
        return ContextOut(kind="personal")
    return ContextOut(kind="org", org=OrgRef.model_validate(ctx_org), role=role)


async def member_out(
    uow: UnitOfWork, org_id: uuid.UUID, person_id: uuid.UUID, viewer: uuid.UUID
) -> MemberOut:
    row = (
        await uow.session.execute(
            select(Person, OrgMember.role, OrgMember.created_at)
            .join(OrgMember, OrgMember.person_id == Person.id)
            .where(OrgMember.org_id == org_id, OrgMember.person_id == person_id)
        )
    ).one()
    return MemberOut(person=person_out(row[0], viewer), role=row[1], joined_at=row[2])
