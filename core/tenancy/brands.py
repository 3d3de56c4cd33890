"""Brands of a context and the domains they answer on."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select

from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.idempotency import idempotent_operation
from core.pagination import Page, PageRequest
from core.preconditions import require_match
from core.presenting import context_kind, from_row
from core.scoping import (
    get_in_context,
    insert_in_context,
    keyset_page,
    not_in_context,
    require_manager,
    scoped,
)
from core.tenancy.models import Brand, BrandDomain
from core.tenancy.queries import READ, WRITE
from core.tenancy.schemas import BrandIn, BrandOut, BrandUpdateIn
from core.uow import UnitOfWork
from core.utilities import utcnow


async def _brand_out(uow: UnitOfWork, brands: list[Brand]) -> list[BrandOut]:
    if not brands:
        return []
    domains: dict[uuid.UUID, list[str]] = {b.id: [] for b in brands}
    for brand_id, domain in (
        await uow.session.execute(
            select(BrandDomain.brand_id, BrandDomain.domain)
            .where(BrandDomain.brand_id.in_(list(domains)))
            .order_by(BrandDomain.domain)
        )
    ).all():
        domains[brand_id].append(domain)
    return [from_row(BrandOut, b, domains=domains[b.id], context=context_kind(b.org_id)) for b in brands]


async def _brand(ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID, *, lock: bool = False) -> Brand:
    not_found = not_in_context("brand", "list brands with [[tenancy.list_brands]]")
    return await get_in_context(uow, Brand, ctx, brand_id, lock=lock, not_found=not_found)


def _check_domains(domains: list[str]) -> list[str]:
    unique = sorted(set(domains))
    if len(unique) != len(domains):
        raise ValidationFailed(
            "a domain is listed twice",
            code="duplicate_domain",
            hint="list each domain once",
            errors=[FieldIssue("domains", "duplicates")],
        )
    return unique


async def list_brands(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[BrandOut]:
    ctx.require(READ)
    rows = await keyset_page(uow, scoped(Brand, ctx), page, Brand.created_at, Brand.id)
    return Page[BrandOut](items=await _brand_out(uow, rows.items), next_cursor=rows.next_cursor)


@idempotent_operation("brands.create")
async def create_brand(
    ctx: TenantContext, uow: UnitOfWork, data: BrandIn, idempotency_key: str | None = None
) -> BrandOut:
    require_manager(ctx, WRITE)
    domains = _check_domains(data.domains)
    brand = await insert_in_context(uow, Brand, ctx, slug=data.slug, name=data.name, config=data.config)
    uow.session.add_all(
        [
            BrandDomain(domain=d, brand_id=brand.id, person_id=ctx.person_id, org_id=ctx.org_id)
            for d in domains
        ]
    )
    await uow.session.flush()
    await uow.session.refresh(brand)
    uow.emit("platform/brand.created", {"brand_id": brand.id, "slug": brand.slug, "domains": domains})
    return (await _brand_out(uow, [brand]))[0]


async def get_brand(ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID) -> BrandOut:
    ctx.require(READ)
    return (await _brand_out(uow, [await _brand(ctx, uow, brand_id)]))[0]


async def update_brand(
    ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID, data: BrandUpdateIn, if_match: str | None = None
) -> BrandOut:
    """`if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    require_manager(ctx, WRITE)
    # Locked even without If-Match: every writer of a brand (and its domains) queues here.
    brand = await _brand(ctx, uow, brand_id, lock=True)
    if if_match is not None:
        require_match(if_match, (await _brand_out(uow, [brand]))[0], what="brand")
    if data.name is not None:
        brand.name = data.name
    if data.config is not None:
        brand.config = data.config
    if data.domains is not None:
        wanted = set(_check_domains(data.domains))
        current = set(
            (
                await uow.session.execute(select(BrandDomain.domain).where(BrandDomain.brand_id == brand.id))
            ).scalars()
        )
        if current - wanted:
            await uow.session.execute(
                delete(BrandDomain).where(
                    BrandDomain.brand_id == brand.id, BrandDomain.domain.in_(sorted(current - wanted))
                )
            )
        uow.session.add_all(
            [
                BrandDomain(domain=d, brand_id=brand.id, person_id=brand.person_id, org_id=brand.org_id)
                for d in sorted(wanted - current)
            ]
        )
    brand.updated_at = utcnow()
    await uow.session.flush()
    uow.emit("platform/brand.updated", {"brand_id": brand.id, "slug": brand.slug})
    return (await _brand_out(uow, [brand]))[0]


async def delete_brand(ctx: TenantContext, uow: UnitOfWork, brand_id: uuid.UUID) -> None:
    require_manager(ctx, WRITE)
    brand = await _brand(ctx, uow, brand_id)
    await uow.session.delete(brand)
    await uow.session.flush()
    uow.emit("platform/brand.deleted", {"brand_id": brand_id, "slug": brand.slug})
