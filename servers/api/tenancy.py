"""/v1/orgs (members, invitations, transfer), /v1/brands, /v1/clients."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Path, Query, Response, status
from pydantic import BeforeValidator

from core import tenancy
from core.opener import call_in
from core.pagination import Page
from core.tenancy.schemas import (
    BrandIn,
    BrandOut,
    BrandUpdateIn,
    ClientIn,
    ClientOut,
    ClientUpdateIn,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MemberUpdateIn,
    OrgIn,
    OrgOut,
    OrgUpdateIn,
    TransferIn,
)
from core.validation import SLUG_PATTERN
from servers.api.deps import CallerDep, FeatureRouter, IdempotencyKey, IfMatch, PageDep, tagged

router = FeatureRouter()

# Service operations deliberately without a route, and why (checked by tests/test_parity.py).
NOT_ROUTES = {
    "tenancy.operator_token": "local operator CLI (`atlilith token`): needs database access by design",
    "tenancy.expire_invitations": "scheduled housekeeping, not a caller's operation",
}
# Handles are lowercase; one typed in another case names the same org or person (as the
# X-Atlilith-Org header does), rather than being refused as malformed.
_lower = BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v)
OrgSlug = Annotated[str, _lower, Path(pattern=SLUG_PATTERN, description="The org's slug.")]
PersonSlug = Annotated[str, _lower, Path(pattern=SLUG_PATTERN, description="The person's slug.")]

# --- orgs -----------------------------------------------------------------------------------------


@router.post("/v1/orgs", status_code=status.HTTP_201_CREATED, response_model=OrgOut, tags=["orgs"])
async def create_org(data: OrgIn, caller: CallerDep, idempotency_key: IdempotencyKey = None) -> OrgOut:
    """Create an org; you become its owner."""
    return await caller.call_person_level(tenancy.create_org, data, idempotency_key=idempotency_key)


@router.get("/v1/orgs", response_model=Page[OrgOut], tags=["orgs"])
async def list_orgs(caller: CallerDep, page: PageDep) -> Page[OrgOut]:
    """Orgs you belong to, with your role in each."""
    return await caller.call_person_level(tenancy.list_orgs, page)


@router.get("/v1/orgs/{slug}", response_model=OrgOut, tags=["orgs"])
async def get_org(slug: OrgSlug, caller: CallerDep) -> OrgOut:
    return await call_in(caller.context(slug), tenancy.get_org)


@router.patch("/v1/orgs/{slug}", response_model=OrgOut, tags=["orgs"])
async def update_org(slug: OrgSlug, data: OrgUpdateIn, caller: CallerDep) -> OrgOut:
    """Rename or reconfigure (owner or admin; the slug only by the owner)."""
    return await call_in(caller.context(slug), tenancy.update_org, data)


@router.delete("/v1/orgs/{slug}", status_code=status.HTTP_204_NO_CONTENT, tags=["orgs"])
async def delete_org(slug: OrgSlug, caller: CallerDep) -> None:
    """Delete the org with its members, invitations, brands and clients (owner only)."""
    async with caller.context(slug) as (ctx, uow):
        await tenancy.delete_org(ctx, uow)


@router.post("/v1/orgs/{slug}/transfer", response_model=OrgOut, tags=["orgs"])
async def transfer(slug: OrgSlug, data: TransferIn, caller: CallerDep) -> OrgOut:
    """Offer the org to another member (owner only): it is theirs once they accept, and you stay
    on as admin. The org's `ownership_offer` shows the offer until then."""
    return await call_in(caller.context(slug), tenancy.transfer_ownership, data)


@router.post("/v1/orgs/{slug}/transfer/accept", response_model=OrgOut, tags=["orgs"])
async def accept_transfer(slug: OrgSlug, caller: CallerDep) -> OrgOut:
    """Take the org its owner offered you: you become its owner, they its admin."""
    return await call_in(caller.context(slug), tenancy.accept_ownership)


@router.delete("/v1/orgs/{slug}/transfer", response_model=OrgOut, tags=["orgs"])
async def withdraw_transfer(slug: OrgSlug, caller: CallerDep) -> OrgOut:
    """End the ownership offer: the owner withdraws it, or the member it names declines it."""
    return await call_in(caller.context(slug), tenancy.withdraw_ownership_offer)


@router.get("/v1/orgs/{slug}/members", response_model=Page[MemberOut], tags=["orgs"])
async def list_members(slug: OrgSlug, caller: CallerDep, page: PageDep) -> Page[MemberOut]:
    return await call_in(caller.context(slug), tenancy.list_members, page)


@router.patch("/v1/orgs/{slug}/members/{person}", response_model=MemberOut, tags=["orgs"])
async def update_member(
    slug: OrgSlug, person: PersonSlug, data: MemberUpdateIn, caller: CallerDep
) -> MemberOut:
    return await call_in(caller.context(slug), tenancy.update_member, person, data)


@router.delete("/v1/orgs/{slug}/members/{person}", status_code=status.HTTP_204_NO_CONTENT, tags=["orgs"])
async def remove_member(slug: OrgSlug, person: PersonSlug, caller: CallerDep) -> None:
    """Remove a member (owner or admin), or leave the org by naming yourself."""
    async with caller.context(slug) as (ctx, uow):
        await tenancy.remove_member(ctx, uow, person)


@router.get("/v1/orgs/{slug}/invitations", response_model=Page[InvitationOut], tags=["orgs"])
async def list_invitations(
    slug: OrgSlug,
    caller: CallerDep,
    page: PageDep,
    status_filter: Annotated[
        Literal["pending", "accepted", "declined", "revoked", "expired"] | None, Query(alias="status")
    ] = None,
) -> Page[InvitationOut]:
    return await call_in(caller.context(slug), tenancy.list_invitations, page, status_filter)


@router.post(
    "/v1/orgs/{slug}/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationOut,
    tags=["orgs"],
)
async def create_invitation(
    slug: OrgSlug, data: InvitationIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> InvitationOut:
    """Invite by email or person slug (owner or admin). The invitee accepts from their account."""
    return await call_in(
        caller.context(slug), tenancy.create_invitation, data, idempotency_key=idempotency_key
    )


@router.delete("/v1/orgs/{slug}/invitations/{invitation_id}", response_model=InvitationOut, tags=["orgs"])
async def revoke_invitation(slug: OrgSlug, invitation_id: uuid.UUID, caller: CallerDep) -> InvitationOut:
    return await call_in(caller.context(slug), tenancy.revoke_invitation, invitation_id)


# --- brands ---------------------------------------------------------------------------------------


@router.get("/v1/brands", response_model=Page[BrandOut], tags=["brands"])
async def list_brands(caller: CallerDep, page: PageDep) -> Page[BrandOut]:
    """Brands of the current context (personal, or the org of your token / X-Atlilith-Org)."""
    return await caller.call(tenancy.list_brands, page)


@router.post("/v1/brands", status_code=status.HTTP_201_CREATED, response_model=BrandOut, tags=["brands"])
async def create_brand(data: BrandIn, caller: CallerDep, idempotency_key: IdempotencyKey = None) -> BrandOut:
    return await caller.call(tenancy.create_brand, data, idempotency_key=idempotency_key)


@router.get("/v1/brands/{brand_id}", response_model=BrandOut, tags=["brands"])
async def get_brand(brand_id: uuid.UUID, caller: CallerDep, response: Response) -> BrandOut:
    return tagged(response, await caller.call(tenancy.get_brand, brand_id))


@router.patch("/v1/brands/{brand_id}", response_model=BrandOut, tags=["brands"])
async def update_brand(
    brand_id: uuid.UUID, data: BrandUpdateIn, caller: CallerDep, response: Response, if_match: IfMatch = None
) -> BrandOut:
    return tagged(response, await caller.call(tenancy.update_brand, brand_id, data, if_match))


@router.delete("/v1/brands/{brand_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["brands"])
async def delete_brand(brand_id: uuid.UUID, caller: CallerDep) -> None:
    async with caller.context() as (ctx, uow):
        await tenancy.delete_brand(ctx, uow, brand_id)


# --- clients --------------------------------------------------------------------------------------


@router.get("/v1/clients", response_model=Page[ClientOut], tags=["clients"])
async def list_clients(
    caller: CallerDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="Match name, email or phone.")] = None,
) -> Page[ClientOut]:
    return await caller.call(tenancy.list_clients, page, q)


@router.post("/v1/clients", status_code=status.HTTP_201_CREATED, response_model=ClientOut, tags=["clients"])
async def create_client(
    data: ClientIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> ClientOut:
    return await caller.call(tenancy.create_client, data, idempotency_key=idempotency_key)


@router.get("/v1/clients/{client_id}", response_model=ClientOut, tags=["clients"])
async def get_client(client_id: uuid.UUID, caller: CallerDep, response: Response) -> ClientOut:
    return tagged(response, await caller.call(tenancy.get_client, client_id))


@router.patch("/v1/clients/{client_id}", response_model=ClientOut, tags=["clients"])
async def update_client(
    client_id: uuid.UUID,
    data: ClientUpdateIn,
    caller: CallerDep,
    response: Response,
    if_match: IfMatch = None,
) -> ClientOut:
    return tagged(response, await caller.call(tenancy.update_client, client_id, data, if_match))


@router.delete("/v1/clients/{client_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["clients"])
async def delete_client(client_id: uuid.UUID, caller: CallerDep) -> None:
    async with caller.context() as (ctx, uow):
        await tenancy.delete_client(ctx, uow, client_id)
