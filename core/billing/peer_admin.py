"""Peer components as the platform admin manages them: register, update, rotate keys, check."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import and_, delete, or_, select, update

from core import audit, webhooks
from core.billing import peers
from core.billing.components import builtin_actions
from core.billing.models import Peer, PeerSecret
from core.billing.policy import log
from core.billing.presenters import peer_out
from core.billing.schemas import PeerCreated, PeerHealthOut, PeerIn, PeerKeyOut, PeerOut, PeerUpdateIn
from core.context import TenantContext
from core.errors import Conflict, NotFound, constraint_error
from core.pagination import Page, PageRequest
from core.scoping import keyset_page, map_page, one_or
from core.uow import UnitOfWork
from core.utilities import utcnow

constraint_error(
    "uq_peers_slug",
    Conflict(
        "a component with this slug exists",
        code="peer_exists",
        hint="update it ([[registry.update_peer_component]]) or choose another slug",
    ),
)


async def list_peers(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[PeerOut]:
    """Platform admin: registered peer components."""
    await audit.require_platform_admin(ctx, uow, write=False)
    rows = await keyset_page(uow, select(Peer), page, Peer.slug)
    return map_page(rows, PeerOut.model_validate)


async def register_peer(ctx: TenantContext, uow: UnitOfWork, data: PeerIn) -> PeerCreated:
    """Platform admin: register a peer component; its first key is returned once."""
    await audit.require_platform_admin(ctx, uow)
    if any(spec.component == data.slug for spec in builtin_actions().values()):
        raise Conflict(
            f"{data.slug!r} is a built-in component", code="peer_exists", hint="choose another slug"
        )
    peer = Peer(
        id=uuid.uuid4(),
        slug=data.slug,
        name=data.name,
        base_url=data.base_url,
        actions=[a.model_dump() for a in data.actions],
        timeout_seconds=data.timeout_seconds or uow.db.settings.peer_timeout_seconds,
        enabled=data.enabled,
    )
    uow.session.add(peer)
    await uow.session.flush()
    secret = webhooks.new_secret()
    uow.session.add(PeerSecret(id=uuid.uuid4(), peer_id=peer.id, secret=secret))
    await uow.session.flush()
    await uow.session.refresh(peer)
    # The secret is returned once and never written to the log.
    await audit.record(
        uow,
        ctx,
        "peer.register",
        "peer",
        peer.slug,
        {
            "peer_id": peer.id,
            "name": peer.name,
            "base_url": peer.base_url,
            "actions": [a.name for a in data.actions],
            "enabled": peer.enabled,
        },
    )
    log.info("peer_registered", peer=peer.slug, by=str(ctx.person_id))
    return await _peer_with_keys(uow, peer, secret)


async def _peer_by_slug(uow: UnitOfWork, slug: str) -> Peer:
    return await one_or(
        uow,
        select(Peer).where(Peer.slug == slug).with_for_update(),
        NotFound(
            f"no peer component {slug!r}",
            code="peer_not_found",
            hint="list peers with [[billing.list_peers]]",
        ),
    )


async def update_peer(ctx: TenantContext, uow: UnitOfWork, slug: str, data: PeerUpdateIn) -> PeerCreated:
    """Platform admin: change a peer's URL, actions, timeout or state, or its keys: rotate (a
    new key, returned once; the older ones keep working for the grace) and retire (every key
    but the newest stops at once)."""
    await audit.require_platform_admin(ctx, uow)
    peer = await _peer_by_slug(uow, slug)
    fields = data.model_dump(
        exclude_unset=True, exclude={"rotate_secret", "secret_grace_seconds", "retire_old_secrets"}
    )
    for key, value in fields.items():
        if value is None:
            continue
        setattr(peer, key, value)
    secret = await _rotate_keys(uow, peer, data) if data.rotate_secret or data.retire_old_secrets else None
    peer.updated_at = utcnow()
    await uow.session.flush()
    changed = {k: v for k, v in fields.items() if v is not None}
    if "actions" in changed:
        changed["actions"] = [a["name"] for a in changed["actions"]]
    await audit.record(
        uow,
        ctx,
        "peer.update",
        "peer",
        peer.slug,
        {
            "peer_id": peer.id,
            "changed": changed,
            "secret_rotated": bool(secret),
            "old_secrets_retired": data.retire_old_secrets,
        },
    )
    log.info("peer_updated", peer=peer.slug, rotated=bool(secret), retired=data.retire_old_secrets)
    return await _peer_with_keys(uow, peer, secret)


async def _rotate_keys(uow: UnitOfWork, peer: Peer, data: PeerUpdateIn) -> str | None:
    now = utcnow()
    # Keys already past their end are deleted: a secret is kept no longer than it works.
    await uow.session.execute(
        delete(PeerSecret).where(PeerSecret.peer_id == peer.id, PeerSecret.retires_at <= now)
    )
    still_active = and_(
        PeerSecret.peer_id == peer.id, or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > now)
    )
    secret: str | None = None
    if data.rotate_secret:
        grace = (
            data.secret_grace_seconds
            if data.secret_grace_seconds is not None
            else uow.db.settings.peer_secret_grace_seconds
        )
        ends = now + dt.timedelta(seconds=grace)
        await uow.session.execute(
            update(PeerSecret)
            .where(still_active, or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > ends))
            .values(retires_at=ends)
        )
        secret = webhooks.new_secret()
        uow.session.add(PeerSecret(id=uuid.uuid4(), peer_id=peer.id, secret=secret, created_at=now))
        await uow.session.flush()
    if data.retire_old_secrets:
        newest = (
            select(PeerSecret.id)
            .where(still_active)
            .order_by(PeerSecret.created_at.desc(), PeerSecret.id)
            .limit(1)
            .scalar_subquery()
        )
        await uow.session.execute(
            update(PeerSecret).where(still_active, PeerSecret.id != newest).values(retires_at=now)
        )
    return secret


async def _peer_with_keys(uow: UnitOfWork, peer: Peer, secret: str | None) -> PeerCreated:
    now = utcnow()
    rows = (
        await uow.session.execute(
            select(PeerSecret.id, PeerSecret.created_at, PeerSecret.retires_at)
            .where(
                PeerSecret.peer_id == peer.id,
                or_(PeerSecret.retires_at.is_(None), PeerSecret.retires_at > now),
            )
            .order_by(PeerSecret.created_at.desc(), PeerSecret.id)
        )
    ).all()
    out = peer_out(peer, secret)
    out.keys = [PeerKeyOut(id=r.id, created_at=r.created_at, retires_at=r.retires_at) for r in rows]
    return out


async def check_peer(ctx: TenantContext, uow: UnitOfWork, slug: str) -> PeerHealthOut:
    """Platform admin: call the peer's GET {base}/health now."""
    await audit.require_platform_admin(ctx, uow, write=False)
    peer = await _peer_by_slug(uow, slug)
    healthy, status, took = await peers.health(uow.db.settings, peer.base_url)
    return PeerHealthOut(slug=peer.slug, healthy=healthy, status=status, ms=round(took * 1000, 1))
