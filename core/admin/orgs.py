"""Orgs across tenants: list them with their owner and member count."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from core import audit
from core.admin.lookup import like
from core.admin.schemas import (
    AdminOrgOut,
)
from core.context import TenantContext
from core.pagination import Page, PageRequest
from core.scoping import keyset_rows, map_page
from core.tenancy.models import Org, OrgMember, Person
from core.uow import UnitOfWork


async def list_orgs(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, q: str | None = None
) -> Page[AdminOrgOut]:
    """Every org, newest first, with its owner and member count; `q` matches slug or name."""
    await audit.require_platform_admin(ctx, uow, write=False)
    members = select(func.count()).select_from(OrgMember).where(OrgMember.org_id == Org.id).scalar_subquery()
    stmt = select(Org, Person.slug, members).join(Person, Person.id == Org.owner_id)
    if q and q.strip():
        pattern = like(q.strip())
        stmt = stmt.where(or_(Org.slug.ilike(pattern), Org.name.ilike(pattern)))
    rows = await keyset_rows(uow, stmt, page, Org.created_at, Org.id, descending=True, under=q)
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
