"""What a credential may see: the toolsets listed to it over MCP, and platform operators."""

from __future__ import annotations

from sqlalchemy import or_, select

from core import audit
from core.context import TenantContext
from core.registry.models import Component as ComponentRow
from core.registry.models import Installation
from core.tenancy.models import OrgMember
from core.uow import UnitOfWork


async def listed_toolsets(ctx: TenantContext, uow: UnitOfWork) -> set[str]:
    """Toolsets to list to a credential: the always-available ones, and those installed in any
    context it can act in — the org an API key is bound to; else the person's own context and
    every org they are a member of now. (Calls are still gated in the context each one acts in;
    listing the union spares an agent tools it could call with `org` but would never see.)"""
    person = ctx.person_id
    await uow.act_as_system()  # across the person's own contexts, filtered explicitly below
    tenants = [ctx.tenant_id]
    if not ctx.principal.org_bound:
        orgs = await uow.session.execute(select(OrgMember.org_id).where(OrgMember.person_id == person))
        tenants = [person, *orgs.scalars()]
    rows = await uow.session.execute(
        select(ComponentRow.toolset)
        .where(ComponentRow.toolset.is_not(None), ComponentRow.retired_at.is_(None))
        .where(
            or_(
                ComponentRow.availability == "always",
                select(Installation.id)
                .where(Installation.component_id == ComponentRow.id, Installation.tenant_id.in_(tenants))
                .exists(),
            )
        )
    )
    return {str(t) for t in rows.scalars()}


async def is_platform_admin(ctx: TenantContext, uow: UnitOfWork) -> bool:
    """Re-read on every call (a revoked operator loses access at once)."""
    return await audit.is_platform_admin(uow, ctx.person_id)
