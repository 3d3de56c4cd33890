"""The built-in components, as this process serves them, written to the registry at start-up.

`core` cannot see toolsets, MCP tool definitions or skill files; this module builds the plain
data (`ComponentSpec`) from them and hands it to `core.registry.sync_builtins`, so the
registry always describes what the server really serves.
"""

from __future__ import annotations

from typing import Any

from core import __version__
from core import registry as service
from core.billing.components import builtin_actions
from core.context import known_scopes
from core.observability import get_logger
from core.registry.schemas import ActionSpecData, ComponentSpec, SyncReport, ToolData
from core.uow import Database
from servers import skills as skill_files
from servers.mcp import tool_definitions, toolsets
from tools.base import ToolRuntime, Toolset

log = get_logger("atlilith.registry")


def _availability(ts: Toolset) -> str:
    if ts.platform:
        return "platform"
    return "always" if ts.always else "install"


_cached: list[ComponentSpec] | None = None


def builtin_specs(db: Database) -> list[ComponentSpec]:
    """What this code serves; computed once per process (it is the code, it cannot change)."""
    global _cached
    if _cached is None:
        _cached = _build_specs(db)
    return list(_cached)


def _build_specs(db: Database) -> list[ComponentSpec]:
    found = skill_files.skills()
    actions = builtin_actions()
    scopes = known_scopes()
    specs: list[ComponentSpec] = []
    for ts in toolsets(ToolRuntime(db)):
        skill = found.get(ts.name)
        tools: list[ToolData] = []
        definitions = tool_definitions(ts.tools)
        for spec in sorted(ts.tools, key=lambda t: t.name):
            definition: dict[str, Any] = definitions[spec.name]
            tools.append(
                ToolData(
                    name=spec.name,
                    title=spec.title,
                    description=spec.description,
                    annotations=spec.annotations.model_dump(mode="json", by_alias=True, exclude_none=True),
                    definition=definition,
                )
            )
        specs.append(
            ComponentSpec(
                slug=ts.name,
                name=ts.title or ts.name.replace("-", " ").title(),
                version=__version__,
                description=skill.description if skill else ts.description,
                availability=_availability(ts),
                toolset=ts.name,
                actions=[
                    ActionSpecData(
                        name=a.name,
                        summary=a.summary,
                        price=a.price,
                        unit=a.unit,
                        input_schema=a.input.model_json_schema(),
                        output_schema=a.output.model_json_schema(),
                    )
                    for a in actions.values()
                    if a.component == ts.name
                ],
                tools=tools,
                scopes=_scopes(ts.name, scopes, [a for a in actions.values() if a.component == ts.name]),
                skill_name=skill.name if skill else None,
                skill_text=skill.text if skill else None,
            )
        )
    return specs


def _scopes(name: str, known: dict[str, str], actions: list[Any]) -> list[str]:
    """Its own scopes, and what running its actions needs (jobs:write plus each action's own)."""
    needed = {s for s in known if s.split(":", 1)[0] == name}
    if actions:
        needed.add("jobs:write")
    needed |= {a.scope for a in actions if a.scope}
    return sorted(needed)


async def sync_builtins(db: Database) -> SyncReport:
    specs = builtin_specs(db)
    async with db.system() as uow:
        return await service.sync_builtins(uow, specs)


async def sync_registry(db: Database) -> SyncReport | None:
    """Start-up sync that never stops the server from starting: with the database out, the
    server still answers /health (503) and the next start syncs; tools of installable
    components stay refused until then (the gate fails closed)."""
    try:
        return await sync_builtins(db)
    except Exception:
        log.exception("registry_sync_failed")
        return None
