"""Request and response shapes shared by REST, MCP and events."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.validation import (
    Email,
    Hostnames,
    Input,
    Name,
    Notes,
    Password,
    Slug,
    SlugRef,
    bounded_json,
)

RoleName = Literal["owner", "admin", "member"]
AssignableRole = Literal["admin", "member"]
SiteConfig = Annotated[dict[str, Any], bounded_json(64 * 1024)]
OrgSettings = Annotated[dict[str, Any], bounded_json(16 * 1024)]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- persons, auth ----------------------------------------------------------------------------


class SignupIn(Input):
    email: Email
    password: Password
    slug: Slug = Field(description="Your public handle: 3-40 lowercase letters, digits, hyphens.")
    display_name: Name
    device_id: str | None = Field(default=None, max_length=128)
    refresh_cookie: bool = Field(
        default=False,
        description="For browsers: put the refresh token in an HttpOnly cookie (and a CSRF token in "
        "the readable `atlilith_csrf` cookie) instead of the body.",
    )


class LoginIn(Input):
    login: str = Field(min_length=3, max_length=254, description="Your email or your slug.")
    password: str = Field(min_length=1, max_length=256)
    device_id: str | None = Field(default=None, max_length=128)
    refresh_cookie: bool = Field(
        default=False,
        description="For browsers: put the refresh token in an HttpOnly cookie (and a CSRF token in "
        "the readable `atlilith_csrf` cookie) instead of the body.",
    )


class RefreshIn(Input):
    refresh_token: str = Field(min_length=10, max_length=256)


class LogoutIn(Input):
    all_devices: bool = False


class SwitchIn(Input):
    org: SlugRef | None = Field(description="The org slug to act in, or null for your personal context.")


class PasswordChangeIn(Input):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: Password


class PersonUpdateIn(Input):
    display_name: Name


class PersonOut(Out):
    id: uuid.UUID
    slug: str
    display_name: str
    email: str | None = Field(description="Shown only to the person themself.")


class PersonRef(Out):
    id: uuid.UUID
    slug: str
    display_name: str


class OrgRef(Out):
    id: uuid.UUID
    slug: str
    name: str


class ContextOut(BaseModel):
    kind: Literal["personal", "org"]
    org: OrgRef | None = None
    role: RoleName | None = None


class MembershipOut(BaseModel):
    org: OrgRef
    role: RoleName
    joined_at: dt.datetime


class CredentialOut(BaseModel):
    kind: Literal["session", "api_key", "oauth"]
    scopes: list[str]
    api_key_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None


class MeOut(BaseModel):
    person: PersonOut
    context: ContextOut
    memberships: list[MembershipOut]
    platform_admin: bool = Field(description="A platform operator (admin toolset, `admin:*` scopes).")
    credential: CredentialOut


class AuthOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105
    expires_in: int = Field(description="Seconds until the access token expires.")
    expires_at: dt.datetime
    refresh_token: str | None = Field(
        default=None, description="Single use; present it to POST /v1/auth/refresh for a new pair."
    )
    refresh_expires_at: dt.datetime | None = None
    person: PersonOut
    context: ContextOut
    # Which session the pair belongs to, for binding browser cookies to it; never serialized.
    _session_id: uuid.UUID | None = PrivateAttr(default=None)

    @property
    def session_id(self) -> uuid.UUID | None:
        return self._session_id


# --- API keys ---------------------------------------------------------------------------------


class ApiKeyIn(Input):
    name: Name
    scopes: list[str] = Field(
        min_length=1, max_length=50, description="e.g. ['tenancy:read', 'messaging:ingest'], or ['*']."
    )
    org: SlugRef | None = Field(default=None, description="Bind the key to one org; null = any of yours.")
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyOut(Out):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    org: OrgRef | None = None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    token: str = Field(description="The key itself. Shown once: store it now.")


# --- orgs, members, invitations --------------------------------------------------------------


class OrgIn(Input):
    slug: Slug
    name: Name


class OrgUpdateIn(Input):
    name: Name | None = None
    slug: Slug | None = Field(default=None, description="Renaming the slug needs the owner.")
    settings: OrgSettings | None = None


class OwnershipOfferOut(Out):
    person: PersonRef = Field(description="The member the org is offered to.")
    offered_at: dt.datetime


class OrgOut(Out):
    id: uuid.UUID
    slug: str
    name: str
    owner: PersonRef
    role: RoleName = Field(description="Your role in this org.")
    settings: dict[str, Any]
    ownership_offer: OwnershipOfferOut | None = Field(
        default=None, description="Ownership offered to a member, until they accept or decline."
    )
    created_at: dt.datetime
    updated_at: dt.datetime


class TransferIn(Input):
    person: SlugRef = Field(description="Slug of the member the org is offered to; they accept to own it.")


class MemberUpdateIn(Input):
    role: AssignableRole


class MemberOut(BaseModel):
    person: PersonOut
    role: RoleName
    joined_at: dt.datetime


class InvitationIn(Input):
    email: Email | None = Field(default=None, description="An email (they may sign up later); or `person`.")
    person: SlugRef | None = Field(default=None, description="A handle; or `email`.")
    role: AssignableRole = "member"
    expires_in_days: int = Field(default=7, ge=1, le=90, description="Days it stays open.")

    @model_validator(mode="after")
    def _one_invitee(self) -> InvitationIn:
        if (self.email is None) == (self.person is None):
            raise ValueError("give exactly one of `email` or `person`")
        return self


class InvitationOut(BaseModel):
    id: uuid.UUID
    org: OrgRef
    email: str | None
    invitee: PersonRef | None
    role: AssignableRole
    status: Literal["pending", "accepted", "declined", "revoked", "expired"]
    invited_by: PersonRef | None
    expires_at: dt.datetime
    created_at: dt.datetime
    responded_at: dt.datetime | None


# --- brands and clients ---------------------------------------------------------------------


HexColour = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")]


class SiteColours(Input):
    primary: HexColour | None = None
    background: HexColour | None = None
    text: HexColour | None = None


class SiteContact(Input):
    email: Email | None = None
    phone: Annotated[str, Field(max_length=40)] | None = None


class SiteSettings(BaseModel):
    """The keys of a brand's `config` its public site reads (`/site/{slug}` and the brand's
    domains); other keys are kept as given."""

    model_config = ConfigDict(extra="allow")
    tagline: Annotated[str, Field(max_length=200)] | None = None
    about: Annotated[str, Field(max_length=5000)] | None = None
    logo_url: Annotated[str, Field(pattern=r"^https://[^\s\"'<>]+$", max_length=2000)] | None = Field(
        default=None, description="An https URL."
    )
    colours: SiteColours | None = None
    services: list[uuid.UUID] | None = Field(
        default=None, max_length=100, description="The services the site offers (default: every active one)."
    )
    contact: SiteContact | None = None


def _site(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if config is not None:
        try:
            SiteSettings.model_validate(config)  # a bad colour or URL is refused when written
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{where}: {first['msg']}") from None
    return config


class BrandIn(Input):
    slug: Slug = Field(description="Names the public site: /site/{slug}; unique platform-wide.")
    name: Name
    domains: Hostnames = Field(default_factory=list, max_length=20)
    config: SiteConfig = Field(
        default_factory=dict,
        description="Site configuration (JSON, up to 64 KiB): tagline, about, logo_url, colours "
        "{primary, background, text}, services [ids], contact {email, phone}; other keys are kept.",
    )

    _config = field_validator("config")(_site)


class BrandUpdateIn(Input):
    name: Name | None = None
    domains: Hostnames | None = Field(default=None, max_length=20)
    config: SiteConfig | None = None

    _config = field_validator("config")(_site)


class BrandOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    domains: list[str]
    config: dict[str, Any]
    context: Literal["personal", "org"]
    org_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class ClientIn(Input):
    name: Name
    email: Email | None = None
    phone: str | None = Field(default=None, min_length=3, max_length=40)
    notes: Notes | None = None


class ClientUpdateIn(Input):
    name: Name | None = None
    email: Email | None = None
    phone: str | None = Field(default=None, min_length=3, max_length=40)
    notes: Notes | None = None


class ClientOut(Out):
    id: uuid.UUID
    name: str
    email: str | None
    phone: str | None
    notes: str | None
    polyseme_person_id: uuid.UUID | None = Field(
        default=None, description="Stable id of this person in this context, the same in every component."
    )
    org_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime


class Deleted(BaseModel):
    id: str
    deleted: Literal[True] = True
