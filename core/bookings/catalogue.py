"""Bookable services: list, read, create, update and delete, with who delivers them."""

from __future__ import annotations

import uuid
from decimal import Decimal

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert

from core.bookings.models import Service, ServiceProvider
from core.bookings.policy import READ, WRITE
from core.bookings.presenters import money
from core.bookings.queries import eligible_providers, find_provider, load_service
from core.bookings.schemas import ServiceIn, ServiceOut, ServiceUpdateIn
from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.idempotency import idempotent_operation
from core.money import digits_said, fits, nearest
from core.pagination import Page, PageRequest
from core.preconditions import require_match
from core.presenting import context_kind, from_row
from core.scoping import in_context, insert_in_context, keyset_page, require_manager, scoped
from core.uow import UnitOfWork


async def _service_out(ctx: TenantContext, uow: UnitOfWork, services: list[Service]) -> list[ServiceOut]:
    eligible = await eligible_providers(ctx, uow, [s.id for s in services]) if services else {}
    return [
        from_row(
            ServiceOut,
            s,
            price=money(s.price_amount, s.currency),
            providers=[p.ref for p in sorted(eligible.get(s.id, []), key=lambda p: p.slug)],
            late_cancel_fee=money(s.late_cancel_fee, s.currency),
            context=context_kind(s.org_id),
        )
        for s in services
    ]


async def _provider_ids(ctx: TenantContext, uow: UnitOfWork, slugs: list[str] | None) -> list[uuid.UUID]:
    if ctx.org_id is None:
        if slugs and any(s.lower() != (ctx.person_slug or "") for s in slugs):
            raise ValidationFailed(
                "in your personal context you are the only provider",
                code="provider_not_member",
                hint="create the service in an org to have other members deliver it",
                errors=[FieldIssue("providers", "only yourself")],
            )
        return [ctx.person_id]
    if not slugs:
        return [ctx.person_id]
    ids: list[uuid.UUID] = []
    for slug in dict.fromkeys(s.lower() for s in slugs):
        provider = await find_provider(ctx, uow, slug)
        ids.append(provider.id)
    return ids


async def _set_providers(
    ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID, ids: list[uuid.UUID]
) -> None:
    await uow.session.execute(
        delete(ServiceProvider).where(
            ServiceProvider.service_id == service_id,
            in_context(ServiceProvider, ctx),
            ServiceProvider.provider_id.not_in(ids),
        )
    )
    await uow.session.execute(
        pg_insert(ServiceProvider)
        .values(
            [
                {"service_id": service_id, "provider_id": p, "person_id": ctx.person_id, "org_id": ctx.org_id}
                for p in ids
            ]
        )
        .on_conflict_do_nothing()
    )


def _check_price(
    amount: Decimal | None, currency: str | None, fee: Decimal | None, *, changed: bool = True
) -> None:
    """The one rule of a service's money: a price has an amount and a currency; a late fee
    needs a price (its currency is the price's); amounts have their currency's decimals.
    `changed`: whether the caller set any of them now -- the decimals of a price stored before
    they were checked are not the business of an edit that leaves the price alone."""
    if fee is not None and amount is None:
        raise ValidationFailed(
            "a late cancellation fee needs a price, in the same currency",
            hint="send `price` with the fee, or no fee",
            errors=[FieldIssue("late_cancel_fee", "a `late_cancel_fee` needs a price, in the same currency")],
        )
    if (amount is None) != (currency is None):
        raise ValidationFailed(
            "a price needs both an amount and a currency",
            hint="send `price_amount` and `currency` together",
            errors=[FieldIssue("currency" if currency is None else "price_amount", "required with a price")],
        )
    if currency is None or not changed:
        return
    given = (("price_amount", amount), ("late_cancel_fee", fee))
    if odd := [(f, a) for f, a in given if a is not None and not fits(a, currency)]:
        field, first = odd[0]
        raise ValidationFailed(
            digits_said(currency),
            hint=f"write {field} as {currency} prices are written: {nearest(first, currency)}, not {first}",
            errors=[FieldIssue(f, digits_said(currency), "amount_precision") for f, _ in odd],
        )


async def list_services(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, active: bool | None = None
) -> Page[ServiceOut]:
    """Services of the current context, oldest first."""
    ctx.require(READ)
    stmt = scoped(Service, ctx)
    if active is not None:
        stmt = stmt.where(Service.active.is_(active))
    rows = await keyset_page(uow, stmt, page, Service.created_at, Service.id, under=active)
    return Page[ServiceOut](items=await _service_out(ctx, uow, rows.items), next_cursor=rows.next_cursor)


async def get_service(ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID) -> ServiceOut:
    ctx.require(READ)
    return (await _service_out(ctx, uow, [await load_service(ctx, uow, service_id)]))[0]


@idempotent_operation("bookings.services.create")
async def create_service(
    ctx: TenantContext, uow: UnitOfWork, data: ServiceIn, idempotency_key: str | None = None
) -> ServiceOut:
    """Create a bookable service (person, or an org's owner/admin)."""
    require_manager(ctx, WRITE)
    _check_price(data.price_amount, data.currency, data.late_cancel_fee)
    providers = await _provider_ids(ctx, uow, data.providers)
    values = data.model_dump(exclude={"providers"})
    service = await insert_in_context(uow, Service, ctx, **values)
    await _set_providers(ctx, uow, service.id, providers)
    uow.emit("bookings/service.created", {"service_id": service.id, "name": service.name})
    return (await _service_out(ctx, uow, [service]))[0]


async def update_service(
    ctx: TenantContext,
    uow: UnitOfWork,
    service_id: uuid.UUID,
    data: ServiceUpdateIn,
    if_match: str | None = None,
) -> ServiceOut:
    """Change a service; omitted fields stay. Existing bookings keep the terms they were made on.
    `if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    require_manager(ctx, WRITE)
    # Locked even without If-Match: every writer of a service (and its providers) queues here.
    service = await load_service(ctx, uow, service_id, lock=True)
    if if_match is not None:
        require_match(if_match, (await _service_out(ctx, uow, [service]))[0], what="service")
    fields = data.model_dump(exclude_unset=True, exclude={"providers"})
    for required in (
        "name",
        "duration_minutes",
        "active",
        "approval_required",
        "location_kind",
        "assignment",
    ):
        if required in fields and fields[required] is None:
            raise ValidationFailed(
                f"{required} cannot be null",
                hint=f"send a value for `{required}`, or leave it out to keep the current one",
                errors=[FieldIssue(required, "cannot be cleared")],
            )
    money = ("price_amount", "currency", "late_cancel_fee")
    merged = {k: fields.get(k, getattr(service, k)) for k in money}
    _check_price(
        merged["price_amount"],
        merged["currency"],
        merged["late_cancel_fee"],
        changed=any(k in fields for k in money),
    )
    if fields:
        await uow.session.execute(
            update(Service)
            .where(Service.id == service.id, in_context(Service, ctx))
            .values(**fields, updated_at=func.now())
            .execution_options(synchronize_session=False)
        )
    if data.providers is not None:
        await _set_providers(ctx, uow, service.id, await _provider_ids(ctx, uow, data.providers))
    changed = sorted(set(fields) | ({"providers"} if data.providers is not None else set()))
    if changed:
        uow.emit("bookings/service.updated", {"service_id": service.id, "changed": changed})
    return (await _service_out(ctx, uow, [await load_service(ctx, uow, service_id)]))[0]


async def delete_service(ctx: TenantContext, uow: UnitOfWork, service_id: uuid.UUID) -> None:
    """Delete a service that was never booked (otherwise: deactivate it)."""
    require_manager(ctx, WRITE)
    service = await load_service(ctx, uow, service_id)
    await uow.session.execute(delete(Service).where(Service.id == service.id, in_context(Service, ctx)))
    uow.emit("bookings/service.deleted", {"service_id": service_id, "name": service.name})
