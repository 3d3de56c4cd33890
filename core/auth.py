"""Turning a bearer credential (`core.credentials`) into a live `TenantContext`: the person,
session or key and the membership re-read in one statement, and the row-level-security settings
bound to the result. Every door opens its context through `core.opener.open_context`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import column, text

from core.context import ALL_SCOPES, Principal, PrincipalKind, Role, TenantContext
from core.credentials import Credential
from core.errors import PermissionDenied, Unauthenticated
from core.uow import UnitOfWork

# The ticket is read after the function ran (a set-returning function in FROM runs first).
# Every request's first statement: executed on the driver's connection (`UnitOfWork.fetch`).
_RESOLVE_COLUMNS = (
    "person_id", "person_slug", "person_status", "session_ok", "key_id", "key_org_id", "key_scopes",
    "org_id", "org_slug", "role", "toolsets",
)  # fmt: skip
_RESOLVE_SQL = (
    f"SELECT {', '.join('r.' + c for c in _RESOLVE_COLUMNS)},"
    " current_setting('app.ctx_ticket', true) AS ctx_ticket"
    " FROM platform.resolve_context($1, $2, $3, $4, $5, $6, $7, $8) r"
)


class _Fields:
    """A record's columns as attributes, as a SQLAlchemy row gives them (`_resolve_oauth`'s)."""

    __slots__ = ("_record",)

    def __init__(self, record: Any) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        try:
            return self._record[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass(frozen=True)
class Binding:
    """A context `platform.resolve_context` checked and bound in SQL, with the ticket that lets a
    later transaction bind the same context without reading the credential again."""

    ctx: TenantContext
    ticket: str | None


async def resolve_context(
    uow: UnitOfWork,
    credential: Credential,
    org: str | uuid.UUID | None = None,
    *,
    use_token_org: bool = True,
    resource: str | None = None,
) -> TenantContext:
    """Re-read the person, session or key, and membership, in one statement, and bind the
    transaction's row-level-security settings to the resulting context (`resolve_binding`)."""
    binding = await resolve_binding(uow, credential, org, use_token_org=use_token_org, resource=resource)
    return binding.ctx


async def resolve_binding(
    uow: UnitOfWork,
    credential: Credential,
    org: str | uuid.UUID | None = None,
    *,
    use_token_org: bool = True,
    resource: str | None = None,
    with_toolsets: bool = False,
) -> Binding:
    """`org`: a slug or id the caller asks to act in; None = the credential's own org (token
    claim or key binding) when `use_token_org`, else personal. The literal "personal" forces
    personal. `resource`: the protected resource the call is made to (the MCP endpoint's URL),
    where OAuth access tokens minted for it are accepted; None (REST, CLI) accepts none.
    `with_toolsets`: also read which toolsets the bound context may use, by the installation
    gate's rule, for the gate to answer from in this transaction (`UnitOfWork.available_to`)."""
    if credential.oauth_hash is not None:
        return await _resolve_oauth(uow, credential.oauth_hash, org, use_token_org, resource, with_toolsets)
    claims = credential.claims
    org_id, org_slug = _asked_org(org)
    if org is None and use_token_org and claims is not None:
        org_id = claims.org_id
    records = await uow.fetch(
        _RESOLVE_SQL,
        claims.person_id if claims else None,
        claims.session_id if claims else None,
        credential.api_key[0] if credential.api_key else None,
        credential.api_key[1] if credential.api_key else None,
        org_id,
        org_slug,
        uow.trace_id,
        with_toolsets,
    )
    if len(records) > 1:  # as `one_or_none` would: one credential is one caller
        raise RuntimeError("platform.resolve_context returned more than one row")
    row = _Fields(records[0]) if records else None
    _refuse_dead(row, credential)
    principal = _principal(row, credential)
    if credential.api_key:
        _refuse_outside_key_org(row, org, asked=bool(org_id or org_slug))
    wanted_org = org_id or org_slug or (principal.org_id if principal.org_bound else None)
    # A token that acts in an org by itself (issued by a switch) stays there when no org is
    # named: leaving it takes naming `personal`, or a switch.
    from_token = org is None and use_token_org and claims is not None and claims.org_id is not None
    personal = (
        "passing org `personal` or switching ([[tenancy.switch_context]])"
        if from_token
        else "omitting the org"
    )
    return _bound(uow, row, principal, wanted_org, org_slug, personal=personal)


def _asked_org(org: str | uuid.UUID | None) -> tuple[uuid.UUID | None, str | None]:
    """The org asked for, as (id, slug); both None for the personal context or no choice."""
    if isinstance(org, uuid.UUID):
        return org, None
    if isinstance(org, str) and org and org != "personal":
        return None, org.strip().lower()
    return None, None


def _person_gone() -> Unauthenticated:
    return Unauthenticated(
        "the person behind this token no longer exists",
        code="token_invalid",
        hint="sign in with an account that exists ([[tenancy.login]])",
    )


def _refuse_dead(row: Any, credential: Credential) -> None:
    """The credential, its person and (for tokens) its session must be alive right now."""
    if row is None:
        if credential.api_key:
            raise Unauthenticated(
                "the API key is unknown, revoked or expired",
                code="api_key_invalid",
                hint="create a new key ([[tenancy.create_api_key]]) and use it",
            )
        raise _person_gone()
    if row.person_status != "active":
        raise Unauthenticated(
            "this account is suspended",
            code="account_suspended",
            hint="contact the platform operator",
        )
    if credential.claims is not None and not row.session_ok:
        raise Unauthenticated(
            "this session has been signed out",
            code="session_revoked",
            hint="sign in again ([[tenancy.login]])",
        )


def _principal(row: Any, credential: Credential) -> Principal:
    if credential.api_key:
        key_org: uuid.UUID | None = row.key_org_id
        return Principal(
            kind=PrincipalKind.API_KEY,
            person_id=row.person_id,
            scopes=frozenset(row.key_scopes or ()),
            api_key_id=row.key_id,
            org_id=key_org,
            org_bound=key_org is not None,
        )
    claims = credential.claims
    assert claims is not None
    return Principal(
        kind=PrincipalKind.SESSION,
        person_id=claims.person_id,
        scopes=claims.scopes or frozenset({ALL_SCOPES}),
        session_id=claims.session_id,
        device_id=claims.device_id,
        org_id=claims.org_id,
    )


def _refuse_outside_key_org(row: Any, org: str | uuid.UUID | None, *, asked: bool) -> None:
    """A key bound to an org acts only there: asking for personal or another org is refused."""
    key_org: uuid.UUID | None = row.key_org_id
    if key_org is not None and (org == "personal" or (asked and row.org_id != key_org)):
        raise PermissionDenied(
            "this API key is bound to another org",
            code="api_key_org_mismatch",
            hint="omit `org`, or use a key created for that org or without an org",
        )


def _bound(
    uow: UnitOfWork,
    row: Any,
    principal: Principal,
    wanted_org: uuid.UUID | str | None,
    org_slug: str | None,
    *,
    personal: str,
) -> Binding:
    """The context `platform.resolve_context` found (and bound in SQL), refused when the org
    asked for is not one the person belongs to; the unit of work keeps its ticket."""
    if wanted_org is not None and row.role is None:
        # Named as the caller named it; an org known only by the credential's id is not shown
        # as that id (it means nothing to a person).
        which = (
            f"the org {org_slug!r} (or it does not exist)" if org_slug else "the org this credential acts in"
        )
        raise PermissionDenied(
            f"you are not a member of {which}",
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
    toolsets = frozenset(row.toolsets) if row.toolsets is not None else None
    uow.bind(ctx, row.ctx_ticket, available=toolsets)
    return Binding(ctx, row.ctx_ticket)


# Named in order, as `_RESOLVE_SQL`'s are.
_RESOLVE_OAUTH_COLUMNS = (
    "grant_id", "grant_org_id", "client_id", "scopes", "resource", "token_status", "person_id",
    "person_slug", "person_status", "org_id", "org_slug", "role", "toolsets", "ctx_ticket",
)  # fmt: skip
_RESOLVE_OAUTH_SQL = text(
    "SELECT t.grant_id, t.grant_org_id, t.client_id, t.scopes, t.resource, t.status AS token_status,"
    " r.person_id, r.person_slug, r.person_status, r.org_id, r.org_slug, r.role, r.toolsets,"
    " current_setting('app.ctx_ticket', true) AS ctx_ticket"
    " FROM platform.oauth_token_owner(:hash) t"
    " LEFT JOIN LATERAL platform.resolve_context("
    "   CASE WHEN t.status = 'ok' AND t.resource = :resource THEN t.person_id END, NULL, NULL, NULL,"
    "   coalesce(CAST(:org_id AS uuid), CASE WHEN :grant_org THEN t.grant_org_id END),"
    "   CAST(:org_slug AS text), :trace, :with_toolsets) r ON true"
).columns(*(column(c) for c in _RESOLVE_OAUTH_COLUMNS))


async def _resolve_oauth(
    uow: UnitOfWork,
    token_hash: str,
    org: str | uuid.UUID | None,
    use_token_org: bool,
    resource: str | None,
    with_toolsets: bool,
) -> Binding:
    """An OAuth access token: the connection's person in the context chosen on consent (the
    default), or the `org` asked for where the person is a member — checked live, like any
    credential. One statement: the token's owner, then `platform.resolve_context` for them."""
    org_id, org_slug = _asked_org(org)
    row = (
        await uow.rows(
            _RESOLVE_OAUTH_SQL,
            {
                "hash": token_hash,
                "resource": resource or "",
                "org_id": org_id,
                "org_slug": org_slug,
                "grant_org": org is None and use_token_org,
                "trace": uow.trace_id,
                "with_toolsets": with_toolsets,
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
        raise _person_gone()
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
