"""What several tenancy modules ask the database, and the scopes their operations check."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, text

from core.context import Role, TenantContext
from core.errors import FieldIssue, NotFound, PermissionDenied
from core.scoping import one_or, row_or
from core.tenancy.models import Org, OrgMember, Person
from core.uow import UnitOfWork

READ = "tenancy:read"
WRITE = "tenancy:write"


def administered_org(ctx: TenantContext, scope: str = WRITE) -> uuid.UUID:
    """The org the caller acts in, for managing its members and invitations: refused unless
    the credential has `scope` and the caller is the org's owner or an admin."""
    ctx.require(scope)
    ctx.require_role(Role.OWNER, Role.ADMIN)
    return ctx.require_org()


async def person_id_by_slug(uow: UnitOfWork, slug: str) -> uuid.UUID:
    person_id = (
        await uow.session.execute(text("SELECT platform.person_id_by_slug(:s)"), {"s": slug})
    ).scalar_one_or_none()
    if person_id is None:
        raise NotFound(
            f"no one has the handle {slug!r}",
            code="person_not_found",
            hint="check the handle with the person (the name they signed up with); they need an account",
            errors=[FieldIssue("person", f"no one has the handle {slug!r}", "not_found")],
        )
    return uuid.UUID(str(person_id))


async def my_org(ctx: TenantContext, uow: UnitOfWork, slug: str) -> Org:
    """The org `slug`, which the caller must be a member of: what a person may bind a credential
    (an API key, an app's connection) to."""
    return await one_or(
        uow,
        select(Org)
        .join(OrgMember, OrgMember.org_id == Org.id)
        .where(Org.slug == slug, OrgMember.person_id == ctx.person_id),
        PermissionDenied(
            f"you are not a member of {slug!r}",
            code="not_a_member",
            hint="choose personal or one of your orgs ([[tenancy.list_orgs]])",
            errors=[FieldIssue("org", "not one of your orgs")],
        ),
    )


@dataclass(frozen=True)
class Member:
    person_id: uuid.UUID
    role: str


async def member_by_slug(ctx: TenantContext, uow: UnitOfWork, slug: str) -> Member:
    not_found = NotFound(
        f"{slug!r} is not a member of {ctx.org_slug!r}",
        code="member_not_found",
        hint="list members with [[tenancy.list_members]]",
    )
    person_id, role = await row_or(
        uow,
        select(OrgMember.person_id, OrgMember.role)
        .join(Person, Person.id == OrgMember.person_id)
        .where(OrgMember.org_id == ctx.require_org(), Person.slug == slug),
        not_found,
    )
    return Member(person_id, role)
