"""Request and response shapes of the component registry (see the REST contract in
docs/registry.md), and the plain-data spec the start-up sync hands to the core."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.billing.schemas import COMPONENT_PATTERN, PeerActionIn, check_base_url
from core.validation import Input, Name, bounded_json

Kind = Literal["builtin", "peer"]
Availability = Literal["install", "always", "platform"]
CONFIG_MAX_BYTES = 16 * 1024
Config = Annotated[dict[str, Any], bounded_json(CONFIG_MAX_BYTES)]


# --- what the servers layer hands to the sync --------------------------------------------------------


class ActionSpecData(BaseModel):
    name: str
    summary: str = ""
    price: int = 0
    unit: str = "call"
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})
    output_schema: dict[str, Any] | None = None


class ToolData(BaseModel):
    """One tool as served in tools/list (the full definition: its hash is the component's)."""

    name: str
    title: str | None = None
    description: str
    annotations: dict[str, Any] = Field(default_factory=dict)
    definition: dict[str, Any] = Field(default_factory=dict, description="The tools/list entry.")


class ComponentSpec(BaseModel):
    """A built-in component as the running code serves it."""

    slug: str
    name: str
    version: str
    description: str
    availability: Availability = "install"
    toolset: str | None = None
    actions: list[ActionSpecData] = Field(default_factory=list)
    tools: list[ToolData] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    skill_name: str | None = None
    skill_text: str | None = None


class SyncReport(BaseModel):
    created: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    unchanged: list[str] = Field(default_factory=list)
    retired: list[str] = Field(default_factory=list)
    # Entries a newer package version wrote: left as they are (a rolling deploy).
    kept_newer: list[str] = Field(default_factory=list)


# --- reads --------------------------------------------------------------------------------------------


class ActionSummary(BaseModel):
    name: str
    price: int
    unit: str
    summary: str


class ActionDetail(ActionSummary):
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None = None


class ToolOut(BaseModel):
    name: str
    title: str | None = None
    description: str
    annotations: dict[str, Any]


class ComponentSummary(BaseModel):
    slug: str
    name: str
    version: str
    kind: Kind
    description: str
    toolset: str | None
    tools_count: int
    tools_hash: str = Field(description="Changes when its tools change.")
    actions: list[ActionSummary]
    installed: bool
    rank: float | None = None


class Component(ComponentSummary):
    actions: list[ActionDetail]  # type: ignore[assignment]
    availability: Availability
    tools: list[ToolOut]
    scopes: list[str]
    skill_name: str | None
    base_url: str | None
    health_url: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    version: str
    tools_hash: str
    created_at: dt.datetime


# --- installations ---------------------------------------------------------------------------------


class InstallIn(Input):
    component: str = Field(pattern=COMPONENT_PATTERN, description="The component's slug.")
    config: Config = Field(default_factory=dict, description="Component settings for this context.")


class InstallationUpdate(Input):
    config: Config


class Installation(BaseModel):
    component: str
    name: str
    version: str
    tools_hash: str
    config: dict[str, Any]
    installed_at: dt.datetime
    updated_at: dt.datetime


class Installed(Installation):
    created: bool = Field(description="False: it was already installed (config untouched).")


class Uninstalled(BaseModel):
    component: str
    uninstalled: bool = True


# --- peer components (platform admins) --------------------------------------------------------------


class PeerComponentIn(Input):
    slug: str = Field(pattern=COMPONENT_PATTERN, description="The component name callers use.")
    name: Name
    version: str = Field(default="1.0.0", min_length=1, max_length=40)
    description: str = Field(default="", max_length=2000)
    base_url: str = Field(min_length=8, max_length=500)
    health_url: str | None = Field(default=None, min_length=8, max_length=500)
    actions: list[PeerActionIn] = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=list, max_length=20)
    skill_text: str | None = Field(default=None, max_length=64 * 1024, description="Its SKILL.md.")
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)
    enabled: bool = True

    @field_validator("base_url", "health_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)


class PeerComponentUpdate(Input):
    name: Name | None = None
    version: str | None = Field(default=None, min_length=1, max_length=40)
    description: str | None = Field(default=None, max_length=2000)
    base_url: str | None = Field(default=None, min_length=8, max_length=500)
    health_url: str | None = Field(default=None, min_length=8, max_length=500)
    actions: list[PeerActionIn] | None = Field(default=None, min_length=1, max_length=100)
    scopes: list[str] | None = Field(default=None, max_length=20)
    skill_text: str | None = Field(default=None, max_length=64 * 1024)
    timeout_seconds: int | None = Field(default=None, ge=1, le=86_400)
    enabled: bool | None = None
    rotate_secret: bool = False
    secret_grace_seconds: int | None = Field(default=None, ge=0, le=30 * 86_400)
    retire_old_secrets: bool = False

    @field_validator("base_url", "health_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else check_base_url(value)


class PeerComponentOut(BaseModel):
    component: Component
    secret: str | None = Field(
        default=None,
        description="The new Standard Webhooks key (whsec_...) shared with the peer. Shown once.",
    )
