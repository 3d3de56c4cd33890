"""One operation, three doors: every public service operation has a REST route and an MCP tool,
or sits on this list with the reason it doesn't."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

from core.features import feature_names

ROOT = Path(__file__).resolve().parent.parent

# operation -> why it has no MCP tool. (Every operation must have a REST route or be here too.)
NO_TOOL = {
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
    "tenancy.create_invitation": "invitations are a person-to-person flow in the portal",
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
}
NO_ROUTE = {
    "tenancy.operator_token": "local operator CLI (`atlilith token`): needs database access by design",
    "tenancy.expire_invitations": "scheduled housekeeping, not a caller's operation",
}


def _operations() -> set[str]:
    ops: set[str] = set()
    for feature in feature_names():
        try:
            module = importlib.import_module(f"core.{feature}.service")
        except ModuleNotFoundError:
            continue
        for name, fn in inspect.getmembers(module, inspect.iscoroutinefunction):
            if not name.startswith("_") and fn.__module__ == module.__name__:
                ops.add(f"{feature}.{name}")
    return ops


def _called(folder: str) -> set[str]:
    """`service.x(...)` calls in a door's modules, as `feature.x`."""
    found: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
                for alias in node.names:
                    if alias.name == "service":
                        aliases[alias.asname or "service"] = node.module.split(".")[1]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                found.add(f"{aliases[node.value.id]}.{node.attr}")
    return found


def test_every_operation_has_its_doors() -> None:
    ops = _operations()
    assert len(ops) >= 30
    routes, tools = _called("servers/api"), _called("tools")
    missing_route = sorted(op for op in ops if op not in routes and op not in NO_ROUTE)
    missing_tool = sorted(op for op in ops if op not in tools and op not in NO_TOOL and op not in NO_ROUTE)
    assert missing_route == [], "operations without a REST route (add one or justify in NO_ROUTE)"
    assert missing_tool == [], "operations without an MCP tool (add one or justify in NO_TOOL)"
    stale = sorted((set(NO_TOOL) | set(NO_ROUTE)) - ops)
    assert stale == [], "exclusions naming operations that no longer exist"
    both = sorted(op for op in NO_TOOL if op in tools)
    assert both == [], "operations that have a tool but are still listed as excluded"
