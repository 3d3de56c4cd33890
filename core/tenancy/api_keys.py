"""API keys: minted by a signed-in person, listed and revoked by them."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select

from core.context import TenantContext, known_scopes
from core.credentials import new_api_key
from core.errors import FieldIssue, NotFound, ValidationFailed
from core.pagination import Page, PageRequest
from core.scoping import keyset_rows, map_page, row_or
from core.tenancy.models import ApiKey, Org
from core.tenancy.queries import my_org
from core.tenancy.schemas import ApiKeyCreated, ApiKeyIn, ApiKeyOut, OrgRef
from core.uow import UnitOfWork
from core.utilities import utcnow


def _api_key_out(key: ApiKey, org: Org | None) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=list(key.scopes),
        org=OrgRef.model_validate(org) if org else None,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
    )


async def create_api_key(ctx: TenantContext, uow: UnitOfWork, data: ApiKeyIn) -> ApiKeyCreated:
    """Only a signed-in person mints keys: a leaked key cannot breed more keys."""
    ctx.require_human()
    known = known_scopes()
    unknown = [s for s in data.scopes if s != "*" and not s.endswith(":*") and s not in known]
    if unknown:
        raise ValidationFailed(
            f"unknown scopes: {', '.join(unknown)}",
            code="unknown_scope",
            hint="valid scopes: " + ", ".join(["*", *known]),
            errors=[FieldIssue("scopes", f"unknown scope {s!r}") for s in unknown],
        )
    # No `org` in the request: the key is for the context the request acts in (a switched token,
    # or the org header), never silently one for all of the person's orgs. `"org": null` asks
    # for an unbound key outright.
    asked = data.org if "org" in data.model_fields_set else ctx.org_slug
    org = await my_org(ctx, uow, asked) if asked else None
    minted = new_api_key()
    key = ApiKey(
        person_id=ctx.person_id,
        org_id=org.id if org else None,
        name=data.name,
        prefix=minted.prefix,
        secret_hash=minted.secret_hash,
        scopes=sorted(set(data.scopes)),
        expires_at=utcnow() + dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None,
    )
    uow.session.add(key)
    await uow.session.flush()
    await uow.session.refresh(key)
    uow.emit(
        "platform/api_key.created",
        {"api_key_id": key.id, "name": key.name, "scopes": key.scopes, "bound_org_id": key.org_id},
    )
    return ApiKeyCreated(**_api_key_out(key, org).model_dump(), token=minted.token)


async def list_api_keys(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[ApiKeyOut]:
    ctx.require_human()
    stmt = (
        select(ApiKey, Org).outerjoin(Org, Org.id == ApiKey.org_id).where(ApiKey.person_id == ctx.person_id)
    )
    rows = await keyset_rows(uow, stmt, page, ApiKey.created_at, ApiKey.id, descending=True)
    return map_page(rows, lambda r: _api_key_out(r[0], r[1]))


async def revoke_api_key(ctx: TenantContext, uow: UnitOfWork, key_id: uuid.UUID) -> ApiKeyOut:
    ctx.require_human()
    key, org = await row_or(
        uow,
        select(ApiKey, Org)
        .outerjoin(Org, Org.id == ApiKey.org_id)
        .where(ApiKey.id == key_id, ApiKey.person_id == ctx.person_id),
        NotFound(
            "no such API key", code="api_key_not_found", hint="list your keys with [[tenancy.list_api_keys]]"
        ),
    )
    if key.revoked_at is None:  # revoking twice is a no-op, so retries are safe
        key.revoked_at = utcnow()
        uow.emit("platform/api_key.revoked", {"api_key_id": key.id, "name": key.name})
    return _api_key_out(key, org)
