"""The component registry: what can be installed, where it is installed, and how to find it.

Built-in components are written by `sync_builtins` from what the running code serves (the
servers layer builds the specs from the toolsets, actions, scopes and skills). Peer components
are written by platform admins, together with their billing peer in one unit of work.
Installations belong to one context; `core.registry.gate` refuses a component's tools and
actions where it is not installed.

Where things live: `catalogue` (search and reads), `installs` (installations), `sync` (the
start-up sync of built-ins), `peers` (peer components), `access` (what a credential may see);
scopes, loaders and shared refusals in `queries`, answers in `presenters`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.utilities import lazy_exports

if TYPE_CHECKING:
    from core.registry.access import is_platform_admin, listed_toolsets
    from core.registry.catalogue import (
        MAX_QUERY_WORDS,
        get_component,
        get_skill,
        list_versions,
        search_components,
    )
    from core.registry.installs import (
        get_installation,
        install,
        install_builtins,
        list_installations,
        uninstall,
        update_installation,
    )
    from core.registry.peers import register_peer, register_peer_component, update_peer, update_peer_component
    from core.registry.presenters import canonical_json, tools_hash
    from core.registry.queries import READ, WRITE
    from core.registry.sync import sync_builtins, version_key

__all__ = [
    "MAX_QUERY_WORDS",
    "READ",
    "WRITE",
    "canonical_json",
    "get_component",
    "get_installation",
    "get_skill",
    "install",
    "install_builtins",
    "is_platform_admin",
    "list_installations",
    "list_versions",
    "listed_toolsets",
    "register_peer",
    "register_peer_component",
    "search_components",
    "sync_builtins",
    "tools_hash",
    "uninstall",
    "update_installation",
    "update_peer",
    "update_peer_component",
    "version_key",
]

# The operations load on first use, not with the package: the kernel reaches this package on
# its own import (core.auth -> core.registry.gate), before the core.auth and core.uow names the
# operations import exist.
_OPERATION_MODULES = ("queries", "presenters", "catalogue", "installs", "sync", "access", "peers")


_load = lazy_exports(__name__, __all__, _OPERATION_MODULES)


def __getattr__(name: str) -> Any:
    return _load(name)
