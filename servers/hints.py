"""Each door's names for the operations that core hints refer to (`core.doors`): REST routes,
MCP tools, CLI commands. REST and MCP names are read from the code that serves them; the CLI
has a handful of commands, named here, and points at the REST route for everything else."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from fastapi.routing import APIRoute

from core.doors import DOOR_HEADER, operations_called, render
from servers.api import api_routers
from tools.base import ToolSpec

__all__ = ["DOOR_HEADER", "cli_names", "for_rest", "mcp_names", "rest_names"]

CLI_NAMES = {
    "registry.install": "`atlilith add <component> [--org ORG]`",
    "registry.search_components": "`atlilith search <words>`",
    "billing.get_balance": "`atlilith credits`",
    "billing.list_jobs": "`atlilith jobs list`",
    "billing.get_job": "`atlilith jobs get <id>`",
    "billing.cancel_job": "`atlilith jobs cancel <id>`",
    "tenancy.login": "`atlilith login`",
    "tenancy.refresh": "`atlilith login`",
    "tenancy.whoami": "`atlilith whoami`",
    "tenancy.list_orgs": "`atlilith whoami`",
    "tenancy.switch_context": "`--org ORG`",
}

# Operations an agent reaches without a tool of their own.
MCP_NAMES = {
    "tenancy.switch_context": "the tool's `org` argument",
    "tenancy.login": "a new token or API key for this MCP connection",
    "tenancy.refresh": "a new token for this MCP connection",
}


@cache
def rest_names() -> dict[str, str]:
    """`feature.operation` -> "METHOD /path" of the route that calls it (reads before writes)."""
    names: dict[str, str] = {}
    routes = [r for router in api_routers() for r in router.routes if isinstance(r, APIRoute)]
    for route in sorted(routes, key=lambda r: "GET" not in (r.methods or ())):
        methods = route.methods or {"GET"}
        method = "GET" if "GET" in methods else sorted(methods)[0]
        for op in sorted(operations_called(route.endpoint)):
            names.setdefault(op, f"`{method} {route.path}`")
    return names


def cli_names() -> dict[str, str]:
    return {**rest_names(), **CLI_NAMES}


def mcp_names(specs: Iterable[ToolSpec]) -> dict[str, str]:
    """`feature.operation` -> the tool that calls it; an operation no tool serves is named by
    its REST route, marked as such, so the agent can tell its person what to do."""
    tools: dict[str, str] = {}
    for spec in sorted(specs, key=lambda s: (not s.read_only, s.name)):
        for op in sorted(operations_called(spec.fn)):
            tools.setdefault(op, f"`{spec.name}`")
    rest = {op: f"{route} (REST; no tool)" for op, route in rest_names().items()}
    return {**rest, **tools, **MCP_NAMES}


def for_rest(hint: str | None, *, cli: bool = False) -> str | None:
    return render(hint, cli_names() if cli else rest_names(), _unknown)


def _unknown(op: str) -> str:
    return op.replace(".", ": ").replace("_", " ")
