"""Scopes, loaders and the shared refusals of the registry's operations."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from core import scoping
from core.context import TenantContext, register_scopes
from core.errors import Conflict, NotFound, PermissionDenied, constraint_error
from core.registry.access import is_platform_admin
from core.registry.models import Component as ComponentRow
from core.registry.models import ComponentVersion, Installation
from core.scoping import in_context, scoped
from core.uow import UnitOfWork

READ, WRITE = "registry:read", "registry:write"
register_scopes(
    {
        "registry:read": "search the component registry and read installations",
        "registry:write": "install, configure and uninstall components in a context",
    }
)
constraint_error(
    "uq_components_slug",
    Conflict("a component with this slug exists", code="component_exists", hint="choose another slug"),
)


def component_not_found(slug: str) -> NotFound:
    return NotFound(
        f"no component {slug!r}",
        code="component_not_found",
        hint="search the registry with [[registry.search_components]]",
    )


async def load_component(uow: UnitOfWork, slug: str, *, lock: bool = False) -> ComponentRow:
    stmt = select(ComponentRow).where(ComponentRow.slug == slug.strip().lower())
    if lock:
        stmt = stmt.with_for_update()
    row = (await uow.session.execute(stmt)).scalar_one_or_none()
    if row is None or row.retired_at is not None:
        raise component_not_found(slug)
    return row


async def visible_component(ctx: TenantContext, uow: UnitOfWork, slug: str) -> ComponentRow:
    row = await load_component(uow, slug)
    if row.availability == "platform" and not await is_platform_admin(ctx, uow):
        raise component_not_found(slug)
    return row


async def is_installed(ctx: TenantContext, uow: UnitOfWork, row: ComponentRow) -> bool:
    if row.availability == "always":
        return True
    found = await uow.session.execute(
        select(Installation.id).where(Installation.component_id == row.id, in_context(Installation, ctx))
    )
    return found.first() is not None


def require_manager(ctx: TenantContext) -> None:
    """Installing and configuring: the person in their own context, an org's owner or admin."""
    scoping.require_manager(ctx, WRITE)


def refuse_not_installable(row: ComponentRow) -> None:
    if row.availability == "always":
        raise Conflict(
            f"{row.slug!r} is always available in every context: it cannot be installed or removed",
            code="component_always_available",
            hint="use its tools directly; nothing to install",
        )
    if row.availability == "platform":
        raise PermissionDenied(
            f"{row.slug!r} is for platform operators and cannot be installed",
            code="component_not_installable",
            hint="platform operators get it by starting the MCP server with --toolsets " + str(row.toolset),
        )


async def load_installation(
    ctx: TenantContext, uow: UnitOfWork, row: ComponentRow, *, lock: bool = False
) -> Installation:
    stmt = scoped(Installation, ctx).where(Installation.component_id == row.id)
    not_installed = NotFound(
        f"{row.slug!r} is not installed in this context ({ctx.label})",
        code="not_installed",
        hint=f"install {row.slug!r} first with [[registry.install]]",
    )
    return await scoping.one_or(uow, stmt.with_for_update() if lock else stmt, not_installed)


async def installed_component(uow: UnitOfWork, slug: str) -> ComponentRow:
    """The component of an installation; a retired one still counts (it can be uninstalled)."""
    return await scoping.one_or(
        uow,
        select(ComponentRow).where(ComponentRow.slug == slug.strip().lower()),
        NotFound(
            f"{slug!r} is not installed in this context",
            code="not_installed",
            hint="list what is installed here with [[registry.list_installations]]",
        ),
    )


async def record_version(uow: UnitOfWork, component_id: uuid.UUID, version: str, digest: str) -> None:
    await uow.session.execute(
        insert(ComponentVersion)
        .values(id=uuid.uuid4(), component_id=component_id, version=version, tools_hash=digest)
        .on_conflict_do_nothing(index_elements=["component_id", "version", "tools_hash"])
    )
