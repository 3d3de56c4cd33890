"""Answers of the registry: rows as the catalogue and installation models, and the tools hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.presenting import from_row
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
    return from_row(
        ComponentSummary,
        row,
        kind=kind_of(row.kind),
        tools_count=len(row.tools),
        actions=[ActionSummary.model_validate(a) for a in row.actions],
        installed=installed,
        rank=rank,
    )


def kind_of(value: str) -> Kind:
    return "peer" if value == "peer" else "builtin"


def detail_out(row: ComponentRow, installed: bool) -> Component:
    summary = summary_out(row, installed).model_dump(exclude={"actions"})
    return from_row(
        Component,
        row,
        **summary,
        actions=[ActionDetail.model_validate(a) for a in row.actions],
        tools=[ToolOut.model_validate(t) for t in row.tools],
        scopes=list(row.scopes),
    )


def installation_out(inst: Installation, row: ComponentRow) -> InstallationOut:
    # What is installed is the catalogue row's; the configuration and its times, the installation's.
    installed = {"config": inst.config, "installed_at": inst.created_at, "updated_at": inst.updated_at}
    return from_row(InstallationOut, row, component=row.slug, **installed)
