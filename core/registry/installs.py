"""Installations: a component installed in one context, its config, and the seed's bulk install."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from core.context import TenantContext
from core.idempotency import idempotent_operation
from core.observability import get_logger
from core.pagination import Page, PageRequest
from core.preconditions import require_match
from core.registry.changes import context_tools_changed
from core.registry.models import Component as ComponentRow
from core.registry.models import Installation
from core.registry.presenters import installation_out
from core.registry.queries import (
    READ,
    installed_component,
    load_component,
    load_installation,
    refuse_not_installable,
    require_manager,
)
from core.registry.schemas import Installation as InstallationOut
from core.registry.schemas import (
    InstallationUpdate,
    Installed,
    InstallIn,
    Uninstalled,
)
from core.scoping import in_context, keyset_rows, map_page, new_in_context
from core.uow import UnitOfWork
from core.utilities import utcnow

log = get_logger("atlilith.registry")


async def list_installations(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[InstallationOut]:
    """The components installed in the caller's context, by slug."""
    ctx.require(READ)
    stmt = (
        select(Installation, ComponentRow)
        .join(ComponentRow, ComponentRow.id == Installation.component_id)
        .where(in_context(Installation, ctx))
    )
    rows = await keyset_rows(uow, stmt, page, ComponentRow.slug, key=lambda r: [r[1].slug])
    return map_page(rows, lambda r: installation_out(r[0], r[1]))


@idempotent_operation("registry.install")
async def install(
    ctx: TenantContext, uow: UnitOfWork, data: InstallIn, idempotency_key: str | None = None
) -> Installed:
    """Install a component in the caller's context (personal, or the org: owner/admin). Already
    installed: the existing installation, config untouched (`created` false)."""
    require_manager(ctx)
    row = await load_component(uow, data.component)
    refuse_not_installable(row)
    inserted = (
        await uow.session.execute(
            new_in_context(Installation, ctx, component_id=row.id, config=data.config)
            .on_conflict_do_nothing(index_elements=["tenant_id", "component_id"])
            .returning(Installation.id)
        )
    ).scalar_one_or_none()
    inst = await load_installation(ctx, uow, row)
    if inserted is not None:
        uow.emit("registry/installation.created", {"installation_id": inst.id, "component": row.slug})
        context_tools_changed(uow, "installation.created", ctx.person_id, ctx.org_id)
        log.info("component_installed", component=row.slug, context=ctx.label)
    return Installed(**installation_out(inst, row).model_dump(), created=inserted is not None)


async def get_installation(ctx: TenantContext, uow: UnitOfWork, slug: str) -> InstallationOut:
    """One component installed in the caller's context, with its config."""
    ctx.require(READ)
    row = await installed_component(uow, slug)
    refuse_not_installable(row)  # tenancy and registry have no installation to show
    return installation_out(await load_installation(ctx, uow, row), row)


async def update_installation(
    ctx: TenantContext, uow: UnitOfWork, slug: str, data: InstallationUpdate, if_match: str | None = None
) -> InstallationOut:
    """Replace the config of an installed component. `if_match`: the ETag the change is based
    on (core.preconditions); None = last write wins."""
    require_manager(ctx)
    row = await installed_component(uow, slug)
    # Never "install it first" for a component that cannot be installed: an agent would loop.
    refuse_not_installable(row)
    inst = await load_installation(ctx, uow, row, lock=True)
    if if_match is not None:
        require_match(if_match, installation_out(inst, row), what="installation")
    inst.config = data.config
    inst.updated_at = utcnow()
    await uow.session.flush()
    uow.emit("registry/installation.updated", {"installation_id": inst.id, "component": row.slug})
    context_tools_changed(uow, "installation.updated", ctx.person_id, ctx.org_id)
    return installation_out(inst, row)


async def uninstall(ctx: TenantContext, uow: UnitOfWork, slug: str) -> Uninstalled:
    """Remove a component from the caller's context: its tools stop answering at once."""
    require_manager(ctx)
    row = await installed_component(uow, slug)
    refuse_not_installable(row)
    inst = await load_installation(ctx, uow, row, lock=True)
    await uow.session.delete(inst)
    await uow.session.flush()
    uow.emit("registry/installation.deleted", {"installation_id": inst.id, "component": row.slug})
    context_tools_changed(uow, "installation.deleted", ctx.person_id, ctx.org_id)
    log.info("component_uninstalled", component=row.slug, context=ctx.label)
    return Uninstalled(component=row.slug)


async def install_builtins(uow: UnitOfWork, person_id: uuid.UUID, org_id: uuid.UUID | None) -> list[str]:
    """Seed helper (system mode): install every installable built-in in one context."""
    rows = (
        await uow.session.execute(
            select(ComponentRow).where(
                ComponentRow.kind == "builtin",
                ComponentRow.availability == "install",
                ComponentRow.retired_at.is_(None),
            )
        )
    ).scalars()
    added: list[str] = []
    for row in rows:
        inserted = (
            await uow.session.execute(
                insert(Installation)
                .values(id=uuid.uuid4(), person_id=person_id, org_id=org_id, component_id=row.id)
                .on_conflict_do_nothing(index_elements=["tenant_id", "component_id"])
                .returning(Installation.id)
            )
        ).scalar_one_or_none()
        if inserted is not None:
            uow.emit(
                "registry/installation.created",
                {"installation_id": inserted, "component": row.slug},
                person_id=person_id,
                org_id=org_id,
            )
            added.append(row.slug)
    if added:
        context_tools_changed(uow, "installation.created", person_id, org_id)
    return sorted(added)
