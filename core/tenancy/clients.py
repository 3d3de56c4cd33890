"""Clients of a context: the people a provider serves."""

from __future__ import annotations

import uuid

from sqlalchemy import or_

from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.idempotency import idempotent_operation
from core.identity.polyseme import client_person_id
from core.pagination import Page, PageRequest
from core.preconditions import require_match
from core.scoping import get_in_context, insert_in_context, keyset_page, map_page, not_in_context, scoped
from core.tenancy.models import Client
from core.tenancy.queries import READ, WRITE
from core.tenancy.schemas import ClientIn, ClientOut, ClientUpdateIn
from core.uow import UnitOfWork
from core.utilities import utcnow
from core.validation import PHONE_HINT, normalize_phone


def _phone(uow: UnitOfWork, phone: str | None) -> str | None:
    if phone is None:
        return None
    try:
        return normalize_phone(phone, uow.db.settings.default_phone_region)
    except ValueError as exc:
        raise ValidationFailed(
            str(exc), code="invalid_phone", hint=PHONE_HINT, errors=[FieldIssue("phone", str(exc))]
        ) from exc


async def _client(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID, *, lock: bool = False) -> Client:
    not_found = not_in_context("client", "find the client with [[tenancy.list_clients]] in the same context")
    return await get_in_context(uow, Client, ctx, client_id, lock=lock, not_found=not_found)


async def list_clients(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, q: str | None = None
) -> Page[ClientOut]:
    """Clients of the current context, newest first; `q` matches name, email or phone."""
    ctx.require(READ)
    stmt = scoped(Client, ctx)
    if q:
        pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(Client.name.ilike(pattern), Client.email.ilike(pattern), Client.phone.ilike(pattern))
        )
    rows = await keyset_page(uow, stmt, page, Client.created_at, Client.id, descending=True, under=q)
    return map_page(rows, ClientOut.model_validate)


@idempotent_operation("clients.create")
async def create_client(
    ctx: TenantContext, uow: UnitOfWork, data: ClientIn, idempotency_key: str | None = None
) -> ClientOut:
    ctx.require(WRITE)
    phone = _phone(uow, data.phone)
    client = await insert_in_context(
        uow,
        Client,
        ctx,
        name=data.name,
        email=data.email,
        phone=phone,
        notes=data.notes,
        polyseme_person_id=client_person_id(uow.db.settings, ctx.tenant_id, data.email, phone),
    )
    uow.emit("platform/client.created", {"client_id": client.id})
    return ClientOut.model_validate(client)


async def get_client(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID) -> ClientOut:
    ctx.require(READ)
    return ClientOut.model_validate(await _client(ctx, uow, client_id))


async def update_client(
    ctx: TenantContext,
    uow: UnitOfWork,
    client_id: uuid.UUID,
    data: ClientUpdateIn,
    if_match: str | None = None,
) -> ClientOut:
    """`if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    ctx.require(WRITE)
    client = await _client(ctx, uow, client_id, lock=True)
    if if_match is not None:
        require_match(if_match, ClientOut.model_validate(client), what="client")
    fields = data.model_dump(exclude_unset=True)
    if "phone" in fields:
        fields["phone"] = _phone(uow, fields["phone"])
    if "name" in fields and fields["name"] is None:
        raise ValidationFailed(
            "name cannot be null",
            hint="a client always has a name: send a new one, or leave `name` out to keep it",
            errors=[FieldIssue("name", "cannot be cleared")],
        )
    for key, value in fields.items():
        setattr(client, key, value)
    if "email" in fields or "phone" in fields:
        client.polyseme_person_id = client_person_id(
            uow.db.settings, ctx.tenant_id, client.email, client.phone
        )
    if fields:
        client.updated_at = utcnow()
        await uow.session.flush()
        uow.emit("platform/client.updated", {"client_id": client.id, "changed": sorted(fields)})
    return ClientOut.model_validate(client)


async def delete_client(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID) -> None:
    ctx.require(WRITE)
    client = await _client(ctx, uow, client_id)
    await uow.session.delete(client)
    await uow.session.flush()
    uow.emit("platform/client.deleted", {"client_id": client_id})
