"""Turning a bearer credential (`core.credentials`) into a live `TenantContext`: the person,
session or key and the membership re-read in one statement, and the row-level-security settings
bound to the result. One opener for every door (`authenticate`)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text

from core.context import ALL_SCOPES, Principal, PrincipalKind, Role, TenantContext
from core.credentials import Credential, parse_credential
from core.errors import PermissionDenied, Unauthenticated
from core.registry.gate import require_installed
from core.uow import UnitOfWork

# The ticket is read after the function ran (a set-returning function in FROM runs first).
_RESOLVE_SQL = text(
    "SELECT r.*, current_setting('app.ctx_ticket', true) AS ctx_ticket FROM platform.resolve_context("
    ":person, :session, :key_prefix, :key_hash, :org_id, :org_slug, :trace) r"
)


async def resolve_context(
    uow: UnitOfWork,
    credential: Credential,
    org: str | uuid.UUID | None = None,
    *,
    use_token_org: bool = True,
    resource: str | None = None,
) -> TenantContext:
    """Re-read the person, session or key, and membership, in one statement, and bind the
    transaction's row-level-security settings to the resulting context.

    `org`: a slug or id the caller asks to act in; None = the credential's own org (token claim or
    key binding) when `use_token_org`, else personal. The literal "personal" forces personal.
    `resource`: the protected resource the call is made to (the MCP endpoint's URL), where OAuth
    access tokens minted for it are accepted; None (REST, CLI) accepts none.
    """
    if credential.oauth_hash is not None:
        return await _resolve_oauth(uow, credential.oauth_hash, org, use_token_org, resource)
    claims = credential.claims
    org_id: uuid.UUID | None = None
    org_slug: str | None = None
    if isinstance(org, uuid.UUID):
        org_id = org
    elif isinstance(org, str) and org and org != "personal":
        org_slug = org.strip().lower()
    elif org is None and use_token_org and claims is not None:
        org_id = claims.org_id

    row = (
        await uow.session.execute(
            _RESOLVE_SQL,
            {
                "person": claims.person_id if claims else None,
                "session": claims.session_id if claims else None,
                "key_prefix": credential.api_key[0] if credential.api_key else None,
                "key_hash": credential.api_key[1] if credential.api_key else None,
                "org_id": org_id,
                "org_slug": org_slug,
                "trace": uow.trace_id,
            },
        )
    ).one_or_none()

    if row is None:
        if credential.api_key:
            raise Unauthenticated(
                "the API key is unknown, revoked or expired",
                code="api_key_invalid",
                hint="create a new key ([[tenancy.create_api_key]]) and use it",
            )
        raise Unauthenticated("the person behind this token no longer exists", code="token_invalid")
    if row.person_status != "active":
        raise Unauthenticated(
            "this account is suspended",
            code="account_suspended",
            hint="contact the platform operator",
        )
    if claims is not None and not row.session_ok:
        raise Unauthenticated(
            "this session has been signed out",
            code="session_revoked",
            hint="sign in again ([[tenancy.login]])",
        )

    if credential.api_key:
        key_org: uuid.UUID | None = row.key_org_id
        principal = Principal(
            kind=PrincipalKind.API_KEY,
            person_id=row.person_id,
            scopes=frozenset(row.key_scopes or ()),
            api_key_id=row.key_id,
            org_id=key_org,
            org_bound=key_org is not None,
        )
        asked_elsewhere = org == "personal" or (bool(org_id or org_slug) and row.org_id != key_org)
        if key_org is not None and asked_elsewhere:
            raise PermissionDenied(
                "this API key is bound to another org",
                code="api_key_org_mismatch",
                hint="omit `org`, or use a key created for that org or without an org",
            )
    else:
        assert claims is not None
        principal = Principal(
            kind=PrincipalKind.SESSION,
            person_id=claims.person_id,
            scopes=claims.scopes or frozenset({ALL_SCOPES}),
            session_id=claims.session_id,
            device_id=claims.device_id,
            org_id=claims.org_id,
        )

    wanted_org = org_id or org_slug or (principal.org_id if principal.org_bound else None)
    return _bound(uow, row, principal, wanted_org, org_slug, personal="omitting the org")


def _bound(
    uow: UnitOfWork,
    row: Any,
    principal: Principal,
    wanted_org: uuid.UUID | str | None,
    org_slug: str | None,
    *,
    personal: str,
) -> TenantContext:
    """The context `platform.resolve_context` found (and bound in SQL), refused when the org
    asked for is not one the person belongs to; the unit of work keeps its ticket."""
    if wanted_org is not None and row.role is None:
        raise PermissionDenied(
            f"you are not a member of the org {org_slug or str(wanted_org)!r} (or it does not exist)",
            code="not_a_member",
            hint=f"list your orgs with [[tenancy.list_orgs]]; act in your personal context by {personal}",
        )
    ctx = TenantContext(
        principal=principal,
        person_id=row.person_id,
        person_slug=row.person_slug,
        org_id=row.org_id if row.role else None,
        org_slug=row.org_slug if row.role else None,
        role=Role(row.role) if row.role else None,
        trace_id=uow.trace_id,
    )
    uow.bind(ctx, row.ctx_ticket)
    return ctx


_RESOLVE_OAUTH_SQL = text(
    "SELECT t.grant_id, t.grant_org_id, t.client_id, t.scopes, t.resource, t.status AS token_status,"
    " r.person_id, r.person_slug, r.person_status, r.org_id, r.org_slug, r.role,"
    " current_setting('app.ctx_ticket', true) AS ctx_ticket"
    " FROM platform.oauth_token_owner(:hash) t"
    " LEFT JOIN LATERAL platform.resolve_context("
    "   CASE WHEN t.status = 'ok' AND t.resource = :resource THEN t.person_id END, NULL, NULL, NULL,"
    "   coalesce(CAST(:org_id AS uuid), CASE WHEN :grant_org THEN t.grant_org_id END),"
    "   CAST(:org_slug AS text), :trace) r ON true"
)


async def _resolve_oauth(
    uow: UnitOfWork,
    token_hash: str,
    org: str | uuid.UUID | None,
    use_token_org: bool,
    resource: str | None,
) -> TenantContext:
    """An OAuth access token: the connection's person in the context chosen on consent (the
    default), or the `org` asked for where the person is a member — checked live, like any
    credential. One statement: the token's owner, then `platform.resolve_context` for them."""
    org_id = org if isinstance(org, uuid.UUID) else None
    org_slug = org.strip().lower() if isinstance(org, str) and org and org != "personal" else None
    row = (
        await uow.session.execute(
            _RESOLVE_OAUTH_SQL,
            {
                "hash": token_hash,
                "resource": resource or "",
                "org_id": org_id,
                "org_slug": org_slug,
                "grant_org": org is None and use_token_org,
                "trace": uow.trace_id,
            },
        )
    ).one_or_none()
    if row is None or row.token_status == "revoked":  # noqa: S105  (a status, not a secret)
        raise Unauthenticated(
            "this OAuth access token is unknown or its connection was revoked",
            code="token_invalid",
            hint="sign in again through your MCP host (it runs the OAuth flow)",
        )
    if row.token_status == "expired":  # noqa: S105
        raise Unauthenticated(
            "the OAuth access token has expired",
            code="token_expired",
            hint="refresh it at the token endpoint with the refresh token",
        )
    if resource is None or row.resource != resource:
        raise Unauthenticated(
            "this OAuth access token was issued for another resource",
            code="token_wrong_audience",
            hint=f"OAuth tokens are accepted at the MCP endpoint {row.resource}; REST takes a "
            "session token or an API key",
        )
    if row.person_id is None:
        raise Unauthenticated("the person behind this token no longer exists", code="token_invalid")
    if row.person_status != "active":
        raise Unauthenticated(
            "this account is suspended", code="account_suspended", hint="contact the platform operator"
        )
    wanted = org_id or org_slug or (row.grant_org_id if org is None and use_token_org else None)
    principal = Principal(
        kind=PrincipalKind.OAUTH,
        person_id=row.person_id,
        scopes=frozenset(row.scopes or ()),
        grant_id=row.grant_id,
        org_id=row.grant_org_id,
    )
    return _bound(uow, row, principal, wanted, org_slug, personal="passing org `personal`")


async def authenticate(
    uow: UnitOfWork,
    raw_token: str | None,
    org: str | uuid.UUID | None = None,
    *,
    use_token_org: bool = True,
    toolset: str | None = None,
    resource: str | None = None,
) -> TenantContext:
    """The one context opener of every door. `toolset`: the component whose tool is being
    called — the call is refused unless the component is installed in the chosen context. The
    MCP door passes it for every installable toolset; REST feature routes never do (a provider's
    own data stays reachable whatever agents may use: see `core.registry.gate`)."""
    ctx = await resolve_context(
        uow, parse_credential(raw_token, uow.db.tokens), org, use_token_org=use_token_org, resource=resource
    )
    if toolset is not None:
        await require_installed(ctx, uow, toolset=toolset)
    return ctx
