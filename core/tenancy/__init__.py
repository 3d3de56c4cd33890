"""Tenancy: persons, orgs, members, invitations, brands, clients, sessions and API keys.

Every operation here is the one place its rule lives. REST routes and MCP tools call these with a
`TenantContext` the database has just re-checked, and a unit of work they never commit themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.tenancy import constraints as constraints
from core.utilities import lazy_exports

if TYPE_CHECKING:
    from core.tenancy.api_keys import create_api_key, list_api_keys, revoke_api_key
    from core.tenancy.brands import create_brand, delete_brand, get_brand, list_brands, update_brand
    from core.tenancy.clients import create_client, delete_client, get_client, list_clients, update_client
    from core.tenancy.invitations import (
        accept_invitation,
        create_invitation,
        decline_invitation,
        expire_invitations,
        list_invitations,
        list_my_invitations,
        revoke_invitation,
    )
    from core.tenancy.me import change_password, update_me, whoami
    from core.tenancy.members import list_members, remove_member, update_member
    from core.tenancy.orgs import (
        accept_ownership,
        create_org,
        delete_org,
        get_org,
        list_orgs,
        transfer_ownership,
        update_org,
        withdraw_ownership_offer,
    )
    from core.tenancy.queries import READ, WRITE
    from core.tenancy.sessions import (
        Device,
        login,
        logout,
        operator_token,
        refresh,
        signup,
        switch_context,
    )

__all__ = [
    "READ",
    "WRITE",
    "Device",
    "accept_invitation",
    "accept_ownership",
    "change_password",
    "create_api_key",
    "create_brand",
    "create_client",
    "create_invitation",
    "create_org",
    "decline_invitation",
    "delete_brand",
    "delete_client",
    "delete_org",
    "expire_invitations",
    "get_brand",
    "get_client",
    "get_org",
    "list_api_keys",
    "list_brands",
    "list_clients",
    "list_invitations",
    "list_members",
    "list_my_invitations",
    "list_orgs",
    "login",
    "logout",
    "operator_token",
    "refresh",
    "remove_member",
    "revoke_api_key",
    "revoke_invitation",
    "signup",
    "switch_context",
    "transfer_ownership",
    "update_brand",
    "update_client",
    "update_me",
    "update_member",
    "update_org",
    "whoami",
    "withdraw_ownership_offer",
]

# The operations load on first use, not with the package: the kernel reaches this package on
# its own import (core.auth -> core.registry.models -> core.tenancy.models), before the
# core.auth and core.uow names the operations import exist.
_OPERATION_MODULES = (
    "sessions",
    "me",
    "api_keys",
    "orgs",
    "members",
    "invitations",
    "brands",
    "clients",
    "queries",
)


_load = lazy_exports(__name__, __all__, _OPERATION_MODULES)


def __getattr__(name: str) -> Any:
    return _load(name)
