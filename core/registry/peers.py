"""Peer components (platform admins): the registry entry and its billing peer, written together."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import select

from core import audit, billing
from core.billing.schemas import PeerCreated, PeerIn, PeerUpdateIn
from core.context import TenantContext
from core.errors import Conflict, NotFound
from core.observability import get_logger
from core.registry.models import Component as ComponentRow
from core.registry.presenters import detail_out, search_text, tools_hash
from core.registry.queries import record_version
from core.registry.schemas import (
    ActionSpecData,
    PeerComponentIn,
    PeerComponentOut,
    PeerComponentUpdate,
)
from core.uow import UnitOfWork
from core.utilities import utcnow

P = TypeVar("P", bound=BaseModel)

log = get_logger("atlilith.registry")


def _peer_actions(actions: list[Any]) -> list[dict[str, Any]]:
    return [
        ActionSpecData(name=a.name, summary=a.summary, price=a.price, unit="call").model_dump()
        for a in actions
    ]


async def register_peer_component(
    ctx: TenantContext, uow: UnitOfWork, data: PeerComponentIn
) -> PeerComponentOut:
    """Platform admin: register a peer component — its registry entry and its runnable billing
    peer, in one unit of work (either both exist afterwards or neither). The HMAC secret is
    returned once."""
    return (await _register_peer(ctx, uow, data))[0]


async def register_peer(ctx: TenantContext, uow: UnitOfWork, data: PeerIn) -> PeerCreated:
    """The same operation through the billing-shaped door (`POST /v1/admin/peers`), so a peer
    can never be runnable without being in the catalogue."""
    return (await _register_peer(ctx, uow, PeerComponentIn.model_validate(data.model_dump(), strict=False)))[
        1
    ]


def _billing_part(data: BaseModel, model: type[P]) -> P:
    """The billing peer inside a peer component: every field the two models share, passed on
    as given (the component's model bounds them the same way), and none of the catalogue's."""
    shared = model.model_fields.keys() & type(data).model_fields.keys()
    return model(**{name: getattr(data, name) for name in shared})


async def _register_peer(
    ctx: TenantContext, uow: UnitOfWork, data: PeerComponentIn
) -> tuple[PeerComponentOut, PeerCreated]:
    await audit.require_platform_admin(ctx, uow)
    taken = (
        await uow.session.execute(select(ComponentRow.kind).where(ComponentRow.slug == data.slug))
    ).scalar_one_or_none()
    if taken is not None:
        raise Conflict(
            f"a {taken} component {data.slug!r} exists",
            code="component_exists",
            hint="update it ([[registry.update_peer_component]]) or choose another slug",
        )
    peer = await billing.register_peer(ctx, uow, _billing_part(data, PeerIn))
    row = _peer_row(data, peer)
    uow.session.add(row)
    details = {"kind": "peer", "version": row.version, "base_url": row.base_url}
    await _record_change(ctx, uow, row, "component.register", details)
    log.info("peer_component_registered", component=row.slug, by=str(ctx.person_id))
    return PeerComponentOut(component=detail_out(row, False), secret=peer.secret), peer


async def update_peer_component(
    ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerComponentUpdate
) -> PeerComponentOut:
    """Platform admin: change a peer component (entry and billing peer together); a new version
    row is recorded when its version or its actions change. Disabled = hidden from the catalogue."""
    return (await _update_peer(ctx, uow, slug, data))[0]


async def update_peer(ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerUpdateIn) -> PeerCreated:
    """The same operation through the billing-shaped door (`PATCH /v1/admin/peers/{peer}`)."""
    update = PeerComponentUpdate.model_validate(data.model_dump(exclude_unset=True), strict=False)
    return (await _update_peer(ctx, uow, slug, update))[1]


async def _update_peer(
    ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerComponentUpdate
) -> tuple[PeerComponentOut, PeerCreated]:
    await audit.require_platform_admin(ctx, uow)
    row = (
        await uow.session.execute(select(ComponentRow).where(ComponentRow.slug == slug).with_for_update())
    ).scalar_one_or_none()
    if row is None or row.kind != "peer":
        raise NotFound(
            f"no peer component {slug!r}",
            code="component_not_found",
            hint="built-in components change with the code; register peers with "
            "[[registry.register_peer_component]]",
        )
    peer = await billing.update_peer(ctx, uow, slug, _billing_part(data, PeerUpdateIn))
    _apply_update(row, data, peer.base_url)
    row.updated_at = utcnow()
    details = data.model_dump(exclude_none=True, exclude={"skill_text"})
    await _record_change(ctx, uow, row, "component.update", details)
    log.info("peer_component_updated", component=row.slug, by=str(ctx.person_id))
    return PeerComponentOut(component=detail_out(row, False), secret=peer.secret), peer


async def _record_change(
    ctx: TenantContext, uow: UnitOfWork, row: ComponentRow, action: str, details: dict[str, Any]
) -> None:
    """Write the entry, keep its version history (a new row only for a new version or actions),
    read back what the database holds and leave the admin's change in the audit log."""
    await uow.session.flush()
    await record_version(uow, row.id, row.version, row.tools_hash)
    await uow.session.refresh(row)
    await audit.record(uow, ctx, action, "component", row.slug, details)


def _peer_row(data: PeerComponentIn, peer: PeerCreated) -> ComponentRow:
    """The registry entry of a peer just registered in billing (its base URL as billing kept it)."""
    actions = _peer_actions(data.actions)
    digest = tools_hash(actions)
    return ComponentRow(
        id=uuid.uuid4(),
        slug=data.slug,
        name=data.name,
        version=data.version,
        kind="peer",
        availability="install",
        description=data.description,
        toolset=None,
        actions=actions,
        tools=[],
        scopes=sorted(data.scopes),
        skill_name=data.slug if data.skill_text else None,
        skill_text=data.skill_text,
        base_url=peer.base_url,
        health_url=data.health_url or f"{peer.base_url}/health",
        tools_hash=digest,
        search_text=search_text(actions, []),
        retired_at=None if data.enabled else utcnow(),
    )


def _apply_update(row: ComponentRow, data: PeerComponentUpdate, base_url: str) -> None:
    """Copy the fields the update sets; the health URL follows the base URL when it was derived
    from it."""
    slug = row.slug
    if data.name is not None:
        row.name = data.name
    if data.version is not None:
        row.version = data.version
    if data.description is not None:
        row.description = data.description
    if data.scopes is not None:
        row.scopes = sorted(data.scopes)
    if data.skill_text is not None:
        row.skill_text, row.skill_name = data.skill_text or None, slug if data.skill_text else None
    if data.base_url is not None and data.health_url is None and row.health_url == f"{row.base_url}/health":
        row.health_url = f"{base_url}/health"
    if data.health_url is not None:
        row.health_url = data.health_url
    row.base_url = base_url
    if data.actions is not None:
        row.actions = _peer_actions(data.actions)
        row.tools_hash = tools_hash(row.actions)
    row.search_text = search_text(row.actions, [])
    if data.enabled is not None:
        row.retired_at = None if data.enabled else (row.retired_at or utcnow())
