"""Hints name what to do next in each door's own words.

Core writes a reference to an operation, `[[feature.operation]]` (e.g. "list bookings with
[[bookings.list_bookings]]"); each door renders it at its boundary — MCP as the tool's name,
REST as its route, the CLI as its command. Which tool or route serves an operation is read from
the code that calls it (`operations_called`), so a renamed route or tool needs no second edit."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

__all__ = ["DOOR_HEADER", "REFERENCE", "operations_called", "references", "render"]

# A request carrying `X-Atlilith-Door: cli` comes from the `atlilith` client: REST renders its
# hints with CLI commands.
DOOR_HEADER = "X-Atlilith-Door"

REFERENCE = re.compile(r"\[\[([a-z_]+\.[a-z_]+)\]\]")
_SERVICE = re.compile(r"core\.([a-z_]+)\.service")
_FEATURE = re.compile(r"core\.([a-z_]+)")


def references(text: str | None) -> set[str]:
    return set(REFERENCE.findall(text or ""))


def render(text: str | None, names: Mapping[str, str], fallback: Callable[[str], str]) -> str | None:
    """`text` with every reference replaced by the door's name for it (or `fallback(op)`)."""
    if not text or "[[" not in text:
        return text
    return REFERENCE.sub(lambda m: names.get(m.group(1)) or fallback(m.group(1)), text)


def operations_called(fn: Callable[..., Any]) -> set[str]:
    """The core service operations a door function calls, as `feature.operation`: the names
    it reads from a `core.<feature>.service` module it imported (`service.list_bookings`), or
    from a feature package that lists its operations in `__all__` (`billing.list_jobs`)."""
    fn = inspect.unwrap(fn)
    code = getattr(fn, "__code__", None)
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    if code is None or module is None:
        return set()
    names = _all_names(code)
    found: set[str] = set()
    for alias in names:
        target = vars(module).get(alias)
        if not isinstance(target, ModuleType):
            continue
        match = _SERVICE.fullmatch(target.__name__)
        listed = names
        if match is None:
            # A feature split by noun: only what its package lists is an operation.
            match = _FEATURE.fullmatch(target.__name__)
            if match is None or not hasattr(target, "__path__"):
                continue
            listed = names & set(getattr(target, "__all__", ()))
        found |= {
            f"{match.group(1)}.{n}" for n in listed if inspect.iscoroutinefunction(getattr(target, n, None))
        }
    return found


def _all_names(code: Any) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if inspect.iscode(const):  # comprehensions and nested blocks
            names |= _all_names(const)
    return names
