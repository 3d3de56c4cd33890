"""One operation, three doors: every public service operation has a REST route and an MCP tool,
or sits on this list with the reason it doesn't."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

from core.features import feature_names
from tests.support.source import parse

ROOT = Path(__file__).resolve().parent.parent


def _exclusions(package: str, name: str) -> dict[str, str]:
    """Each door module lists the operations it deliberately leaves out, with the reason."""
    found: dict[str, str] = {}
    pkg = importlib.import_module(package)
    for module in pkgutil.iter_modules(pkg.__path__):
        found.update(getattr(importlib.import_module(f"{package}.{module.name}"), name, {}))
    return found


def _operations() -> set[str]:
    """A feature's public operations: the coroutine functions its package lists in `__all__`
    (a feature split by noun), else those defined in its `service` module."""
    ops: set[str] = set()
    for feature in feature_names():
        package = importlib.import_module(f"core.{feature}")
        listed = getattr(package, "__all__", None)
        if listed is not None:
            for name in listed:
                if inspect.iscoroutinefunction(getattr(package, name)):
                    ops.add(f"{feature}.{name}")
            continue
        try:
            module = importlib.import_module(f"core.{feature}.service")
        except ModuleNotFoundError:
            continue
        for name, fn in inspect.getmembers(module, inspect.iscoroutinefunction):
            if not name.startswith("_") and fn.__module__ == module.__name__:
                ops.add(f"{feature}.{name}")
    return ops


def _called(folder: str) -> set[str]:
    """`service.x(...)` or `<feature>.x(...)` calls in a door's modules, as `feature.x`."""
    found: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        tree = parse(path)
        aliases = {}
        features = set(feature_names())
        for node in ast.walk(tree):
            # `from core.<feature> import service [as x]` or `from core import <feature> [as x]`
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core."):
                for alias in node.names:
                    if alias.name == "service":
                        aliases[alias.asname or "service"] = node.module.split(".")[1]
            elif isinstance(node, ast.ImportFrom) and node.module == "core":
                for alias in node.names:
                    if alias.name in features:
                        aliases[alias.asname or alias.name] = alias.name
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
    NO_TOOL = _exclusions("tools", "NOT_TOOLS")
    NO_ROUTE = _exclusions("servers.api", "NOT_ROUTES")
    missing_route = sorted(op for op in ops if op not in routes and op not in NO_ROUTE)
    missing_tool = sorted(op for op in ops if op not in tools and op not in NO_TOOL)
    assert missing_route == [], (
        "operations without a REST route (add one, or justify it in the router's NOT_ROUTES)"
    )
    assert missing_tool == [], (
        "operations without an MCP tool (add one, or justify it in the tools module's NOT_TOOLS)"
    )
    stale = sorted((set(NO_TOOL) | set(NO_ROUTE)) - ops)
    assert stale == [], "exclusions naming operations that no longer exist"
    both = sorted(op for op in NO_TOOL if op in tools)
    assert both == [], "operations that have a tool but are still listed as excluded"
