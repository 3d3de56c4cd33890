"""Answers of the registry: rows as the catalogue and installation models, and the tools hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.registry.models import Component as ComponentRow
from core.registry.models import Installation
from core.registry.schemas import (
    ActionDetail,
    ActionSummary,
    Component,
    ComponentSummary,
    Kind,
    ToolOut,
)
from core.registry.schemas import Installation as InstallationOut


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def tools_hash(definitions: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of the tool definitions (sorted by name), as served."""
    ordered = sorted(definitions, key=lambda d: str(d.get("name", "")))
    return hashlib.sha256(canonical_json(ordered).encode()).hexdigest()


def search_text(actions: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
    parts: list[str] = []
    for a in actions:
        parts += [str(a.get("name", "")).replace("-", " "), str(a.get("summary") or "")]
    for t in tools:
        parts += [
            str(t.get("name", "")).replace("_", " "),
            str(t.get("title") or ""),
            str(t.get("description")),
        ]
    return " ".join(p for p in parts if p)


def summary_out(row: ComponentRow, installed: bool, rank: float | None = None) -> ComponentSummary:
    return ComponentSummary(
        slug=row.slug,
        name=row.name,
        version=row.version,
        kind=kind_of(row.kind),
        description=row.description,
        toolset=row.toolset,
        tools_count=len(row.tools),
        tools_hash=row.tools_hash,
        actions=[ActionSummary.model_validate(a) for a in row.actions],
        installed=installed,
        rank=rank,
    )


def kind_of(value: str) -> Kind:
    return "peer" if value == "peer" else "builtin"


def detail_out(row: ComponentRow, installed: bool) -> Component:
    summary = summary_out(row, installed).model_dump(exclude={"actions"})
    return Component(
        **summary,
        actions=[ActionDetail.model_validate(a) for a in row.actions],
        availability=row.availability,
        tools=[ToolOut.model_validate(t) for t in row.tools],
        scopes=list(row.scopes),
        skill_name=row.skill_name,
        base_url=row.base_url,
        health_url=row.health_url,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def installation_out(inst: Installation, row: ComponentRow) -> InstallationOut:
    return InstallationOut(
        component=row.slug,
        name=row.name,
        version=row.version,
        tools_hash=row.tools_hash,
        config=inst.config,
        installed_at=inst.created_at,
        updated_at=inst.updated_at,
    )
