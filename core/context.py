"""Who acts, in which context, with which scopes.

A `Principal` is what a credential proves (a person, through a session or an API key). A
`TenantContext` is that principal acting in one context — personal or one org — after the
database has re-checked the person's status and membership for this very request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from core.errors import PermissionDenied


class PrincipalKind(StrEnum):
    SESSION = "session"  # a person signed in (JWT access token)
    API_KEY = "api_key"  # an agent or peer service acting for a person
    OAUTH = "oauth"  # an MCP host the person connected through OAuth (core.oauth)
    SERVICE = "service"  # the platform itself acting for a tenant (event handlers, jobs)
    SYSTEM = "system"  # the platform across tenants (relay, sign-up, sweeps)


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"


ALL_SCOPES = "*"

# Scope vocabulary; features add theirs with `register_scopes`. `<feature>:write` implies read.
_KNOWN_SCOPES: dict[str, str] = {
    "tenancy:read": "read orgs, members, brands and clients",
    "tenancy:write": "create and change orgs, members, brands and clients",
}


def register_scopes(scopes: dict[str, str]) -> None:
    _KNOWN_SCOPES.update(scopes)


def known_scopes() -> dict[str, str]:
    return dict(sorted(_KNOWN_SCOPES.items()))


def scope_grants(granted: frozenset[str], wanted: str) -> bool:
    if ALL_SCOPES in granted or wanted in granted:
        return True
    feature, _, action = wanted.partition(":")
    if f"{feature}:*" in granted:
        return True
    return action == "read" and f"{feature}:write" in granted


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    person_id: uuid.UUID | None
    scopes: frozenset[str] = frozenset({ALL_SCOPES})
    session_id: uuid.UUID | None = None
    device_id: str | None = None
    api_key_id: uuid.UUID | None = None
    grant_id: uuid.UUID | None = None  # the OAuth connection (core.oauth) the token belongs to
    # The org the credential is bound to (API key) or hinted at (token claim).
    org_id: uuid.UUID | None = None
    org_bound: bool = False

    @property
    def is_human(self) -> bool:
        return self.kind is PrincipalKind.SESSION


@dataclass(frozen=True)
class TenantContext:
    principal: Principal
    person_id: uuid.UUID
    person_slug: str | None = None
    org_id: uuid.UUID | None = None
    org_slug: str | None = None
    role: Role | None = None  # live role in org_id, re-read for this request
    trace_id: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def personal(self) -> bool:
        return self.org_id is None

    @property
    def tenant_id(self) -> uuid.UUID:
        """The id rows of this context carry in `tenant_id`: the org, or the person when personal."""
        return self.org_id if self.org_id is not None else self.person_id

    @property
    def label(self) -> str:
        return f"org:{self.org_slug}" if self.org_slug else "personal"

    def can(self, scope: str) -> bool:
        return scope_grants(self.principal.scopes, scope)

    def require(self, scope: str) -> None:
        if not self.can(scope):
            # What gets the scope depends on what the caller holds: an app connected through
            # OAuth is connected again asking for it; a key is made anew with it.
            hint = (
                f"connect the app again, asking for the scope {scope!r}"
                if self.principal.kind is PrincipalKind.OAUTH
                else f"use a session token or an API key created with the scope {scope!r}"
            )
            raise PermissionDenied(
                f"this credential lacks the scope {scope!r}",
                code="missing_scope",
                hint=hint,
                extra={"scope": scope},
            )

    def require_org(self) -> uuid.UUID:
        if self.org_id is None:
            raise PermissionDenied(
                "this operation needs an org context",
                code="org_context_required",
                hint="act in an org ([[tenancy.switch_context]]) and try again",
            )
        return self.org_id

    def require_role(self, *roles: Role) -> Role:
        self.require_org()
        if self.role is None or self.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise PermissionDenied(
                f"your role in {self.org_slug!r} is {self.role.value if self.role else 'none'}; "
                f"this needs {allowed}",
                code="insufficient_role",
                hint=f"ask the org's {allowed} to do it",
            )
        return self.role

    def require_human(self) -> None:
        if not self.principal.is_human:
            raise PermissionDenied(
                "only a signed-in person can do this; API keys cannot",
                code="session_required",
                hint="sign in ([[tenancy.login]]) and use the session token",
            )


def service_context(
    person_id: uuid.UUID,
    org_id: uuid.UUID | None,
    scopes: frozenset[str],
    trace_id: str | None = None,
    *,
    person_slug: str | None = None,
    org_slug: str | None = None,
) -> TenantContext:
    """The platform acting for a tenant (a handler, a job, a public page), as `person_id` in
    `org_id`, with exactly `scopes`: what that door may do and nothing more."""
    return TenantContext(
        principal=Principal(kind=PrincipalKind.SERVICE, person_id=person_id, scopes=scopes),
        person_id=person_id,
        person_slug=person_slug,
        org_id=org_id,
        org_slug=org_slug,
        trace_id=trace_id,
    )
