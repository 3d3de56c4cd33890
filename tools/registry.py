"""Toolset `registry`: find, install and uninstall components for the current context."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from core import registry as service
from core.billing.schemas import COMPONENT_PATTERN
from core.pagination import Page
from core.registry import queries as registry_policy
from core.registry.schemas import (
    CONFIG_MAX_BYTES,
    Component,
    ComponentSummary,
    Installation,
    InstallationUpdate,
    Installed,
    InstallIn,
    Kind,
    Uninstalled,
)
from tools.base import FIRST_PAGE, IdempotencyArg, OrgArg, PageArg, ToolRuntime, Toolset, unlisted
from tools.common import json_object_argument

NOT_TOOLS = {
    "registry.sync_builtins": "runs at server start-up",
    "registry.install_builtins": "the seed's bulk install",
    "registry.listed_toolsets": "the per-caller tools/list filter",
    "registry.is_platform_admin": "a check inside other operations",
    "registry.list_versions": "registry_get gives the current tools_hash; the history is REST",
    "registry.get_installation": "registry_list_installations shows each config; the single "
    "read is REST's, for the ETag a conditional PATCH (If-Match) needs",
    "registry.get_skill": "skills are MCP resources: read skill://<name>/SKILL.md",
    "registry.register_peer_component": "platform admins, over REST /v1/admin/components",
    "registry.update_peer_component": "platform admins, over REST /v1/admin/components/{slug}",
    "registry.register_peer": "platform admins, over REST /v1/admin/peers (billing-shaped door)",
    "registry.update_peer": "platform admins, over REST /v1/admin/peers/{peer} (billing-shaped door)",
}

SlugArg = Annotated[
    str, Field(description="The component's slug, e.g. `bookings`."), unlisted(40, pattern=COMPONENT_PATTERN)
]
# Plain `str` (not optional): the SDK would otherwise parse JSON text into an object first.
ConfigArg = Annotated[
    str,
    Field(
        description="Settings: a JSON object, as text.",
        max_length=CONFIG_MAX_BYTES,
    ),
]


def _config(raw: str) -> dict[str, Any]:
    return json_object_argument(raw, "config", code="invalid_config", example='{"locale": "fr"}')


registry = Toolset(
    "registry",
    "Find components, install them in a context, see what is installed.",
    always=True,
    read_scope=registry_policy.READ,
    write_scope=registry_policy.WRITE,
)


@registry.tool(title="Search components", read_only=True)
async def registry_search(
    rt: ToolRuntime,
    q: Annotated[str | None, Field(description="What you need, in words.", max_length=200)] = None,
    kind: Annotated[Kind | None, Field(description="Only `builtin` or `peer` components.")] = None,
    org: OrgArg = None,
    page: PageArg = FIRST_PAGE,
) -> Page[ComponentSummary]:
    """Find components (built-in and peer services) by what you need, e.g. "book appointments"; best
    first, with `installed` for this context and action prices. No `q`: all. Read-only, free."""
    return await rt.call(org, service.search_components, page, q, kind)


@registry.tool(title="Get a component", read_only=True)
async def registry_get(rt: ToolRuntime, slug: SlugArg, org: OrgArg = None) -> Component:
    """One component in full: tools, actions (input schemas, prices), scopes, skill name (read
    skill://<name>/SKILL.md), tools_hash. Read-only, free."""
    return await rt.call(org, service.get_component, slug)


@registry.tool(title="Install a component", read_only=False, idempotent=True)
async def registry_install(
    rt: ToolRuntime,
    component: SlugArg,
    config: ConfigArg = "",
    org: OrgArg = None,
    idempotency_key: IdempotencyArg = None,
) -> Installed:
    """Install a component in this context (personal, or `org`: owner/admin) so its tools answer
    there; a repeat changes nothing. Free; its actions cost credits when run."""
    data = InstallIn(component=component, config=_config(config))
    return await rt.call(org, service.install, data, idempotency_key)


@registry.tool(title="Configure an installed component", read_only=False, idempotent=True)
async def registry_configure(
    rt: ToolRuntime, component: SlugArg, config: ConfigArg = "", org: OrgArg = None
) -> Installation:
    """Replace the config of a component installed in this context."""
    data = InstallationUpdate(config=_config(config))
    return await rt.call(org, service.update_installation, component, data)


@registry.tool(title="Uninstall a component", read_only=False, destructive=True, idempotent=False)
async def registry_uninstall(rt: ToolRuntime, component: SlugArg, org: OrgArg = None) -> Uninstalled:
    """Uninstall a component from this context: its tools stop answering there at once (its data
    stays)."""
    return await rt.call(org, service.uninstall, component)


@registry.tool(title="Installed components", read_only=True)
async def registry_installations(
    rt: ToolRuntime, org: OrgArg = None, page: PageArg = FIRST_PAGE
) -> Page[Installation]:
    """Components installed in this context, with version, tools_hash and config (tenancy and
    registry are always there). Read-only, free."""
    return await rt.call(org, service.list_installations, page)
