"""/v1/auth, /v1/me, /v1/api-keys, /v1/invitations — thin: parse, open the context, call core."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Body, Cookie, Header, Request, Response, status

from core import tenancy
from core.errors import Unauthenticated
from core.opener import call_in
from core.pagination import Page
from core.tenancy import browser
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
from servers.api.deps import PERSONAL, CallerDep, DbDep, FeatureRouter, PageDep

router = FeatureRouter(tags=["auth"])


def _device(request: Request, device_id: str | None) -> tenancy.Device:
    return tenancy.Device(device_id=device_id, user_agent=request.headers.get("user-agent"))


def _host(request: Request) -> str:
    return request.headers.get("host") or request.url.netloc


def _set_cookies(response: Response, cookies: list[browser.Cookie]) -> None:
    for c in cookies:
        response.set_cookie(
            c.name,
            c.value,
            max_age=c.max_age,
            path=c.path,
            httponly=c.http_only,
            secure=c.secure,
            samesite="strict",
        )


def _answer(out: AuthOut, cookie: bool, request: Request, response: Response) -> AuthOut:
    """With `refresh_cookie`, the refresh token leaves the body for an HttpOnly cookie."""
    if not cookie:
        return out
    body, cookies = browser.browser_session(request.app.state.settings, out, _host(request))
    _set_cookies(response, cookies)
    return body


COOKIE_DOC = (
    "With `refresh_cookie: true` (browsers) the refresh token is set as the HttpOnly cookie "
    f"`{browser.REFRESH_COOKIE}` (SameSite=Strict, Path={browser.REFRESH_PATH}, Secure except on "
    f"localhost) and a CSRF token as the readable cookie `{browser.CSRF_COOKIE}`; the body then "
    "carries no refresh token."
)


@router.post(
    "/v1/auth/signup",
    status_code=status.HTTP_201_CREATED,
    response_model=AuthOut,
    description="Create your account (a person; no org is asked) and get tokens. " + COOKIE_DOC,
)
async def signup(data: SignupIn, request: Request, response: Response, db: DbDep) -> AuthOut:
    out = await tenancy.signup(db, data, _device(request, data.device_id))
    return _answer(out, data.refresh_cookie, request, response)


@router.post(
    "/v1/auth/login",
    response_model=AuthOut,
    description="Sign in with your email or slug. " + COOKIE_DOC,
)
async def login(data: LoginIn, request: Request, response: Response, db: DbDep) -> AuthOut:
    out = await tenancy.login(db, data, _device(request, data.device_id))
    return _answer(out, data.refresh_cookie, request, response)


@router.post(
    "/v1/auth/refresh",
    response_model=AuthOut,
    responses={
        403: {
            "description": "The refresh cookie came without a valid CSRF proof (`csrf_failed`) "
            "or from another site's page (`csrf_origin`)."
        }
    },
    description=(
        "Trade a refresh token (single use) for a new access + refresh pair. Browsers send no "
        f"body: the `{browser.REFRESH_COOKIE}` cookie is used instead, rotated in place, and the "
        f"request must echo the `{browser.CSRF_COOKIE}` cookie in `{browser.CSRF_HEADER}` (403 "
        "`csrf_failed` otherwise; a foreign `Origin` is refused too). The new token acts in the "
        "session's last context (the last `POST /v1/auth/switch`), membership re-checked."
    ),
)
async def refresh(
    request: Request,
    response: Response,
    db: DbDep,
    data: Annotated[RefreshIn | None, Body()] = None,
    refresh_cookie: Annotated[
        str | None, Cookie(alias=browser.REFRESH_COOKIE, include_in_schema=False)
    ] = None,
    csrf_cookie: Annotated[str | None, Cookie(alias=browser.CSRF_COOKIE, include_in_schema=False)] = None,
    csrf_header: Annotated[str | None, Header(alias=browser.CSRF_HEADER, max_length=200)] = None,
    origin: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> AuthOut:
    if data is not None:
        return await tenancy.refresh(db, data)
    if not refresh_cookie:
        raise Unauthenticated("no refresh token was sent", code="refresh_invalid", hint="sign in again")
    proof = browser.CsrfProof(cookie=csrf_cookie, header=csrf_header, origin=origin, host=_host(request))
    out = await tenancy.refresh(db, RefreshIn.model_construct(refresh_token=refresh_cookie), proof)
    return _answer(out, True, request, response)


@router.post("/v1/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    caller: CallerDep, request: Request, response: Response, data: Annotated[LogoutIn | None, Body()] = None
) -> None:
    """End this session (or every session with `all_devices`); its tokens stop working at once,
    and the browser's session cookies are cleared."""
    async with caller.context(person_level=True) as (ctx, uow):
        await tenancy.logout(ctx, uow, data or LogoutIn())
    _set_cookies(response, browser.cleared_cookies(_host(request)))


@router.post("/v1/auth/switch", response_model=AuthOut)
async def switch(data: SwitchIn, caller: CallerDep) -> AuthOut:
    """Get an access token for another context: an org you belong to, or null for personal."""
    return await call_in(caller.context(data.org or PERSONAL), tenancy.switch_context)


@router.get("/v1/me", response_model=MeOut, tags=["me"])
async def me(caller: CallerDep) -> MeOut:
    """You, the context this request acts in, and all your memberships."""
    return await caller.call(tenancy.whoami)


@router.patch("/v1/me", response_model=PersonOut, tags=["me"])
async def update_me(data: PersonUpdateIn, caller: CallerDep) -> PersonOut:
    return await caller.call_person_level(tenancy.update_me, data)


@router.post("/v1/me/password", status_code=status.HTTP_204_NO_CONTENT, tags=["me"])
async def change_password(data: PasswordChangeIn, caller: CallerDep) -> None:
    """Change your password; every other device is signed out."""
    async with caller.context(person_level=True) as (ctx, uow):
        await tenancy.change_password(ctx, uow, data)


@router.get("/v1/me/invitations", response_model=Page[InvitationOut], tags=["me"])
async def my_invitations(caller: CallerDep, page: PageDep) -> Page[InvitationOut]:
    """Pending invitations to join orgs."""
    return await caller.call_person_level(tenancy.list_my_invitations, page)


@router.post("/v1/invitations/{invitation_id}/accept", response_model=MemberOut, tags=["me"])
async def accept_invitation(invitation_id: uuid.UUID, caller: CallerDep) -> MemberOut:
    return await caller.call_person_level(tenancy.accept_invitation, invitation_id)


@router.post("/v1/invitations/{invitation_id}/decline", response_model=InvitationOut, tags=["me"])
async def decline_invitation(invitation_id: uuid.UUID, caller: CallerDep) -> InvitationOut:
    return await caller.call_person_level(tenancy.decline_invitation, invitation_id)


@router.post(
    "/v1/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated, tags=["api keys"]
)
async def create_api_key(data: ApiKeyIn, caller: CallerDep) -> ApiKeyCreated:
    """Create an API key for an agent or peer tenancy. The key is shown once. With no `org` in
    the body it is bound to the org the request acts in (`X-Atlilith-Org`, or a token switched
    into that org); `"org": null` makes it unbound."""
    if "org" in data.model_fields_set:  # the body says which org: the token's context is moot
        return await caller.call_person_level(tenancy.create_api_key, data)
    return await caller.call(tenancy.create_api_key, data)


@router.get("/v1/api-keys", response_model=Page[ApiKeyOut], tags=["api keys"])
async def list_api_keys(caller: CallerDep, page: PageDep) -> Page[ApiKeyOut]:
    return await caller.call_person_level(tenancy.list_api_keys, page)


@router.delete("/v1/api-keys/{key_id}", response_model=ApiKeyOut, tags=["api keys"])
async def revoke_api_key(key_id: uuid.UUID, caller: CallerDep) -> ApiKeyOut:
    """Revoke a key; it is refused from the next request on. Revoking twice is harmless."""
    return await caller.call_person_level(tenancy.revoke_api_key, key_id)
