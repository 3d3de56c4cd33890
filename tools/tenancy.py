"""Toolset `tenancy`: who am I, orgs and members, brands, clients."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from core import tenancy as core_tenancy

# Aliased: `tenancy` is this module's toolset.
from core.pagination import Page
from core.tenancy import queries as tenancy_policy
from core.tenancy.schemas import (
    BrandOut,
    ClientIn,
    ClientOut,
    ClientUpdateIn,
    InvitationIn,
    InvitationOut,
    MemberOut,
    MemberUpdateIn,
    MeOut,
    OrgIn,
    OrgOut,
)
from tools.base import FIRST_PAGE, Flat, IdempotencyArg, OrgArg, PageArg, ToolRuntime, Toolset, unlisted

# Service operations deliberately without a tool, and why (checked by tests/test_parity.py).
NOT_TOOLS = {
    "oauth.get_request": "consent is the person's, in the browser: an agent never grants its own access",
    "oauth.approve_request": "consent is the person's, in the browser: an agent never grants its own access",
    "oauth.deny_request": "consent is the person's, in the browser",
    "oauth.list_connections": "human-only credential management (the portal's Agents page)",
    "oauth.revoke_connection": "human-only credential management (the portal's Agents page)",
    "tenancy.signup": "credential flow: an agent already holds a credential",
    "tenancy.login": "credential flow",
    "tenancy.refresh": "credential flow",
    "tenancy.logout": "credential flow",
    "tenancy.switch_context": "agents pass `org` per call instead of switching tokens",
    "tenancy.change_password": "human-only account security",
    "tenancy.update_me": "profile edits belong to the person, in the portal",
    "tenancy.create_api_key": "keys are minted by a signed-in person only (a key can't breed keys)",
    "tenancy.list_api_keys": "human-only credential management",
    "tenancy.revoke_api_key": "human-only credential management",
    "tenancy.get_org": "whoami and orgs_list return the org; kept out to keep the tool list small",
    "tenancy.update_org": "org settings are edited in the portal",
    "tenancy.delete_org": "destructive, owner-only, human-only",
    "tenancy.transfer_ownership": "ownership moves only by the owner's explicit act in the portal",
    "tenancy.accept_ownership": "owning an org is the person's own decision, in the portal",
    "tenancy.withdraw_ownership_offer": "portal flow",
    "tenancy.list_invitations": "portal flow",
    "tenancy.revoke_invitation": "portal flow",
    "tenancy.list_my_invitations": "portal flow",
    "tenancy.accept_invitation": "joining an org is the person's own decision",
    "tenancy.decline_invitation": "portal flow",
    "tenancy.create_brand": "brand sites are configured in the portal",
    "tenancy.get_brand": "brands_list returns every brand with its config",
    "tenancy.update_brand": "brand sites are configured in the portal",
    "tenancy.delete_brand": "destructive; portal only",
    "tenancy.delete_client": "destructive; portal only",
    "tenancy.operator_token": "local operator CLI (`atlilith token`)",
    "tenancy.expire_invitations": "scheduled housekeeping",
}

RequiredOrg = Annotated[str, Field(description="The org's slug."), unlisted(40, min_length=3)]
PersonSlugArg = Annotated[str, Field(description="The person's slug (handle)."), unlisted(40, min_length=3)]
ClientId = Annotated[uuid.UUID, Field(description="The client's id (from clients_list).")]


tenancy = Toolset(
    "tenancy",
    "Who you are, your orgs and their members, brands and clients.",
    always=True,
    read_scope=tenancy_policy.READ,
    write_scope=tenancy_policy.WRITE,
)


@tenancy.tool(title="Who am I", read_only=True, scopes=())
async def whoami(rt: ToolRuntime, org: OrgArg = None) -> MeOut:
    """Who this credential acts as: the person, the context of this call (personal or an org), every
    org membership with its role, and the credential's scopes. Call it first to learn which `org`
    slugs you may pass to other tools. Read-only, free."""
    return await rt.call(org, core_tenancy.whoami)


@tenancy.tool(title="List my orgs", read_only=True)
async def orgs_list(rt: ToolRuntime, page: PageArg = FIRST_PAGE) -> Page[OrgOut]:
    """List the orgs you belong to, with your role in each (owner, admin, member). Read-only."""
    return await rt.call_person_level(core_tenancy.list_orgs, page)


@tenancy.tool(title="Create an org", read_only=False)
async def orgs_create(
    rt: ToolRuntime,
    fields: Flat[OrgIn],
    idempotency_key: IdempotencyArg = None,
) -> OrgOut:
    """Create an org; you become its owner. Use only when the person asks for a new org (a team or
    business). The slug is permanent-ish and public: 3-40 lowercase letters, digits, hyphens."""
    return await rt.call_person_level(core_tenancy.create_org, fields, idempotency_key=idempotency_key)


@tenancy.tool(title="List org members", read_only=True)
async def org_members_list(rt: ToolRuntime, org: RequiredOrg, page: PageArg = FIRST_PAGE) -> Page[MemberOut]:
    """List the members of an org you belong to, with their roles and emails. Read-only."""
    return await rt.call(org, core_tenancy.list_members, page)


@tenancy.tool(title="Invite someone to an org", read_only=False)
async def org_members_invite(
    rt: ToolRuntime,
    org: RequiredOrg,
    fields: Flat[InvitationIn],
    idempotency_key: IdempotencyArg = None,
) -> InvitationOut:
    """Invite a person (slug) or an email to an org as `member` or `admin` (owner or admin only).
    Nobody is added without consent: they join when they accept, in their portal."""
    return await rt.call(org, core_tenancy.create_invitation, fields, idempotency_key=idempotency_key)


@tenancy.tool(title="Change a member's role", read_only=False, idempotent=True)
async def org_members_update(
    rt: ToolRuntime, org: RequiredOrg, person: PersonSlugArg, fields: Flat[MemberUpdateIn]
) -> MemberOut:
    """Change a member's role between `member` and `admin` (owner or admin only). The owner's role
    can't be changed; ownership moves only by the owner's explicit transfer in the portal."""
    return await rt.call(org, core_tenancy.update_member, person, fields)


@tenancy.tool(title="Remove an org member", read_only=False, destructive=True, idempotent=False)
async def org_members_remove(rt: ToolRuntime, org: RequiredOrg, person: PersonSlugArg) -> MemberOut:
    """Remove a member from an org (owner or admin), or leave it by passing your own slug. They lose
    access to the org's data immediately. The owner can't be removed. Confirm with the person before
    calling."""
    return await rt.call(org, core_tenancy.remove_member, person)


@tenancy.tool(title="List brands", read_only=True)
async def brands_list(rt: ToolRuntime, org: OrgArg = None, page: PageArg = FIRST_PAGE) -> Page[BrandOut]:
    """List the brands (sites with their domains and config) of the current context. Read-only."""
    return await rt.call(org, core_tenancy.list_brands, page)


@tenancy.tool(title="List clients", read_only=True)
async def clients_list(
    rt: ToolRuntime,
    org: OrgArg = None,
    q: Annotated[
        str | None, Field(description="Text to match in name, email or phone.", max_length=200)
    ] = None,
    page: PageArg = FIRST_PAGE,
) -> Page[ClientOut]:
    """List the clients (customers) of the current context, newest first. `q` searches name, email
    and phone. Read-only."""
    return await rt.call(org, core_tenancy.list_clients, page, q)


@tenancy.tool(title="Get a client", read_only=True)
async def clients_get(rt: ToolRuntime, client_id: ClientId, org: OrgArg = None) -> ClientOut:
    """Get one client of the current context by id. Read-only."""
    return await rt.call(org, core_tenancy.get_client, client_id)


@tenancy.tool(title="Add a client", read_only=False)
async def clients_create(
    rt: ToolRuntime,
    fields: Flat[ClientIn],
    org: OrgArg = None,
    idempotency_key: IdempotencyArg = None,
) -> ClientOut:
    """Add a client (a customer) to the current context. Search with clients_list first: an email
    already used by a client of this context is refused. Phones are stored in E.164; give the
    country code when the number is not local."""
    return await rt.call(org, core_tenancy.create_client, fields, idempotency_key=idempotency_key)


@tenancy.tool(title="Update a client", read_only=False, idempotent=True)
async def clients_update(
    rt: ToolRuntime,
    client_id: ClientId,
    fields: Flat[ClientUpdateIn],
    org: OrgArg = None,
) -> ClientOut:
    """Change a client's name, email, phone or notes. Omitted fields stay as they are."""
    return await rt.call(org, core_tenancy.update_client, client_id, fields)
