"""What a person does with OAuth: look at a client's request, approve it in a context of their
choosing or deny it, list their connected apps and revoke one. A signed-in person only: an
agent never approves its own access, nor manages another's."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

from sqlalchemy import func, select, text, update

from core.context import TenantContext
from core.errors import NotFound
from core.oauth.authorization import issue_code, redirect_with
from core.oauth.models import OAuthGrant, OAuthRequest
from core.oauth.schemas import (
    ConnectionContextOut,
    ConnectionOut,
    OAuthApproveIn,
    OAuthClientOut,
    OAuthRedirectOut,
    OAuthRequestOut,
    ScopeOut,
)
from core.oauth.scopes import scope_descriptions
from core.pagination import Page, PageRequest
from core.scoping import keyset_rows, map_page, row_or
from core.tenancy.models import Org
from core.tenancy.queries import my_org
from core.uow import UnitOfWork
from core.utilities import utcnow


def _request_gone() -> NotFound:
    return NotFound(
        "no such authorization request (it expired, was decided, or is another person's)",
        code="oauth_request_not_found",
        hint="start again from your MCP host: it opens a new sign-in page",
    )


async def _pending(ctx: TenantContext, uow: UnitOfWork, request_id: str) -> OAuthRequest:
    """The request, claimed by this person on first sight (SQL `claim_oauth_request`): one
    person decides it; others are told it does not exist."""
    ctx.require_human()
    if len(request_id) > 100:
        raise _request_gone()
    claimed = (
        await uow.session.execute(text("SELECT platform.claim_oauth_request(:id)"), {"id": request_id})
    ).scalar_one()
    request = await uow.session.get(OAuthRequest, request_id) if claimed else None
    if request is None:
        raise _request_gone()
    return request


async def get_request(ctx: TenantContext, uow: UnitOfWork, request_id: str) -> OAuthRequestOut:
    """What the client asks for, for the consent page."""
    request = await _pending(ctx, uow, request_id)
    return OAuthRequestOut(
        id=request.id,
        client=OAuthClientOut(
            client_id=request.client_id,
            name=request.client_name or request.client_id,
            client_uri=request.client_uri,
            logo_uri=request.logo_uri,
        ),
        redirect_host=urlsplit(request.redirect_uri).netloc or request.redirect_uri,
        scopes=[ScopeOut(name=n, description=d) for n, d in scope_descriptions(list(request.scopes))],
        resource=request.resource,
        expires_at=request.expires_at,
    )


async def approve_request(
    ctx: TenantContext, uow: UnitOfWork, request_id: str, data: OAuthApproveIn
) -> OAuthRedirectOut:
    """Let the client act for you in the context you choose (personal, or one of your orgs:
    membership checked now, and again on every call the client makes)."""
    request = await _pending(ctx, uow, request_id)
    org_id = (await my_org(ctx, uow, data.org)).id if data.org is not None else None
    grant = OAuthGrant(
        id=uuid.uuid4(),
        person_id=ctx.person_id,
        org_id=org_id,
        client_id=request.client_id,
        client_name=request.client_name,
        scopes=list(request.scopes),
        resource=request.resource,
    )
    uow.session.add(grant)
    await uow.session.flush()
    code = await issue_code(uow, grant, request)
    request.status = "approved"
    uow.emit(
        "platform/oauth_connection.created",
        {"connection_id": grant.id, "client_id": grant.client_id, "scopes": grant.scopes},
        org_id=org_id,
    )
    return OAuthRedirectOut(
        redirect_to=redirect_with(
            request.redirect_uri, code=code, state=request.state, iss=uow.db.settings.base_url
        )
    )


async def deny_request(ctx: TenantContext, uow: UnitOfWork, request_id: str) -> OAuthRedirectOut:
    """Refuse: the client hears `access_denied`."""
    request = await _pending(ctx, uow, request_id)
    request.status = "denied"
    return OAuthRedirectOut(
        redirect_to=redirect_with(
            request.redirect_uri,
            error="access_denied",
            error_description="the person denied the request",
            state=request.state,
            iss=uow.db.settings.base_url,
        )
    )


def _connection_out(grant: OAuthGrant, org_slug: str | None) -> ConnectionOut:
    return ConnectionOut(
        id=grant.id,
        client_id=grant.client_id,
        client_name=grant.client_name or grant.client_id,
        context=ConnectionContextOut(kind="org", org=org_slug)
        if grant.org_id
        else ConnectionContextOut(kind="personal"),
        scopes=list(grant.scopes),
        created_at=grant.created_at,
        last_used_at=grant.last_used_at,
        revoked_at=grant.revoked_at,
    )


async def list_connections(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> Page[ConnectionOut]:
    """Your connected apps (live ones), newest first."""
    ctx.require_human()
    stmt = (
        select(OAuthGrant, Org.slug)
        .outerjoin(Org, Org.id == OAuthGrant.org_id)
        .where(OAuthGrant.person_id == ctx.person_id, OAuthGrant.revoked_at.is_(None))
    )
    rows = await keyset_rows(uow, stmt, page, OAuthGrant.created_at, OAuthGrant.id, descending=True)
    return map_page(rows, lambda r: _connection_out(r[0], r[1]))


async def revoke_connection(ctx: TenantContext, uow: UnitOfWork, connection_id: uuid.UUID) -> ConnectionOut:
    """End a connection: its tokens are refused from the next call on. Twice is harmless."""
    ctx.require_human()
    not_found = NotFound(
        "no such connection",
        code="oauth_connection_not_found",
        hint="list your connected apps with [[oauth.list_connections]]",
    )
    grant, org_slug = await row_or(
        uow,
        select(OAuthGrant, Org.slug)
        .outerjoin(Org, Org.id == OAuthGrant.org_id)
        .where(OAuthGrant.id == connection_id, OAuthGrant.person_id == ctx.person_id),
        not_found,
    )
    if grant.revoked_at is None:
        await uow.session.execute(
            update(OAuthGrant)
            .where(OAuthGrant.id == grant.id)
            .values(revoked_at=func.now(), revoked_reason="revoked_by_person")
        )
        grant.revoked_at = utcnow()
        uow.emit(
            "platform/oauth_connection.revoked",
            {"connection_id": grant.id, "client_id": grant.client_id, "reason": "revoked_by_person"},
            org_id=grant.org_id,
        )
    return _connection_out(grant, org_slug)
