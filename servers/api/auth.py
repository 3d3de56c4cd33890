"""/v1/auth, /v1/me, /v1/api-keys, /v1/invitations — thin: parse, open the context, call core."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Request, status

from core.pagination import Page
from core.tenancy import service
from core.tenancy.schemas import (
    ApiKeyCreated,
    ApiKeyIn,
    ApiKeyOut,
    AuthOut,
    InvitationOut,
    LoginIn,
    LogoutIn,
    MemberOut,
    MeOut,
    PasswordChangeIn,
    PersonOut,
    PersonUpdateIn,
    RefreshIn,
    SignupIn,
    SwitchIn,
)
from servers.api.deps import PERSONAL, CallerDep, DbDep, PageDep

router = APIRouter(tags=["auth"])


def _device(request: Request, device_id: str | None) -> service.Device:
    return service.Device(device_id=device_id, user_agent=request.headers.get("user-agent"))


@router.post("/v1/auth/signup", status_code=status.HTTP_201_CREATED, response_model=AuthOut)
async def signup(data: SignupIn, request: Request, db: DbDep) -> AuthOut:
    """Create your account (a person; no org is asked) and get tokens."""
    return await service.signup(db, data, _device(request, data.device_id))


@router.post("/v1/auth/login", response_model=AuthOut)
async def login(data: LoginIn, request: Request, db: DbDep) -> AuthOut:
    """Sign in with your email or slug."""
    return await service.login(db, data, _device(request, data.device_id))


@router.post("/v1/auth/refresh", response_model=AuthOut)
async def refresh(data: RefreshIn, db: DbDep) -> AuthOut:
    """Trade a refresh token (single use) for a new access + refresh pair."""
    return await service.refresh(db, data)


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(caller: CallerDep, data: Annotated[LogoutIn | None, Body()] = None) -> None:
    """End this session (or every session with `all_devices`); its tokens stop working at once."""
    async with caller.context(person_level=True) as (ctx, uow):
        await service.logout(ctx, uow, data or LogoutIn())


@router.post("/v1/auth/switch", response_model=AuthOut)
async def switch(data: SwitchIn, caller: CallerDep) -> AuthOut:
    """Get an access token for another context: an org you belong to, or null for personal."""
    async with caller.context(data.org or PERSONAL) as (ctx, uow):
        return await service.switch_context(ctx, uow)


@router.get("/v1/me", response_model=MeOut, tags=["me"])
async def me(caller: CallerDep) -> MeOut:
    """You, the context this request acts in, and all your memberships."""
    async with caller.context() as (ctx, uow):
        return await service.whoami(ctx, uow)


@router.patch("/v1/me", response_model=PersonOut, tags=["me"])
async def update_me(data: PersonUpdateIn, caller: CallerDep) -> PersonOut:
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.update_me(ctx, uow, data)


@router.post("/v1/me/password", status_code=status.HTTP_204_NO_CONTENT, tags=["me"])
async def change_password(data: PasswordChangeIn, caller: CallerDep) -> None:
    """Change your password; every other device is signed out."""
    async with caller.context(person_level=True) as (ctx, uow):
        await service.change_password(ctx, uow, data)


@router.get("/v1/me/invitations", response_model=Page[InvitationOut], tags=["me"])
async def my_invitations(caller: CallerDep, page: PageDep) -> Page[InvitationOut]:
    """Pending invitations to join orgs."""
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.list_my_invitations(ctx, uow, page)


@router.post("/v1/invitations/{invitation_id}/accept", response_model=MemberOut, tags=["me"])
async def accept_invitation(invitation_id: uuid.UUID, caller: CallerDep) -> MemberOut:
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.accept_invitation(ctx, uow, invitation_id)


@router.post("/v1/invitations/{invitation_id}/decline", response_model=InvitationOut, tags=["me"])
async def decline_invitation(invitation_id: uuid.UUID, caller: CallerDep) -> InvitationOut:
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.decline_invitation(ctx, uow, invitation_id)


@router.post(
    "/v1/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, tags=["api keys"]
)
async def create_api_key(data: ApiKeyIn, caller: CallerDep) -> ApiKeyCreated:
    """Create an API key for an agent or peer service. The key is shown once."""
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.create_api_key(ctx, uow, data)


@router.get("/v1/api-keys", response_model=Page[ApiKeyOut], tags=["api keys"])
async def list_api_keys(caller: CallerDep, page: PageDep) -> Page[ApiKeyOut]:
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.list_api_keys(ctx, uow, page)


@router.delete("/v1/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"])
async def revoke_api_key(key_id: uuid.UUID, caller: CallerDep) -> ApiKeyOut:
    """Revoke a key; it is refused from the next request on. Revoking twice is harmless."""
    async with caller.context(person_level=True) as (ctx, uow):
        return await service.revoke_api_key(ctx, uow, key_id)
