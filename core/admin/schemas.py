"""Shapes of the platform admin's operations, shared by REST and MCP."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.validation import Input

PersonStatus = Literal["active", "suspended"]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class AdminPersonOut(Out):
    id: uuid.UUID
    slug: str = Field(description="The person's handle.")
    email: str
    display_name: str
    status: PersonStatus
    is_platform_admin: bool
    suspended_at: dt.datetime | None = None
    suspension_reason: str | None = None
    created_at: dt.datetime


class AdminMembershipOut(BaseModel):
    org_id: uuid.UUID
    org_slug: str
    org_name: str
    role: str


class AdminPersonDetail(AdminPersonOut):
    orgs: list[AdminMembershipOut] = Field(description="Every org the person belongs to, with their role.")
    active_sessions: int = Field(description="Signed-in devices not revoked nor expired.")
    active_api_keys: int = Field(description="API keys not revoked nor expired.")


class AdminOrgOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    owner_id: uuid.UUID
    owner_slug: str
    member_count: int
    created_at: dt.datetime


class SuspendIn(Input):
    reason: str = Field(
        min_length=3,
        max_length=500,
        description="Why, for the record (kept on the person and in the audit log).",
    )


class ReactivateIn(Input):
    reason: str | None = Field(default=None, max_length=500, description="Optional note for the audit log.")


class SuspensionOut(BaseModel):
    person: AdminPersonOut
    changed: bool = Field(description="False when the person was already in that state (nothing was done).")
    sessions_revoked: int = Field(default=0, description="Signed-in devices signed out by this call.")


class AuditEntryOut(Out):
    id: uuid.UUID
    at: dt.datetime
    actor_kind: Literal["person", "operator"]
    actor_person_id: uuid.UUID | None
    actor_label: str = Field(description="The actor's handle at the time, or `operator`.")
    credential: str | None = Field(description="`session:<id>` or `api_key:<id>` the actor used.")
    action: str
    target_type: str
    target_id: str | None
    details: dict[str, Any]
    trace_id: str
    context: str = Field(description="The context the actor was in: `personal`, `org:<slug>` or `operator`.")


class PromotionOut(BaseModel):
    person: AdminPersonOut
    changed: bool


class DeadLetterOut(Out):
    event_id: uuid.UUID
    event_name: str
    handler: str = Field(description="The handler that gave up on the event.")
    attempts: int = Field(description="Attempts used, a process that died handling it included.")
    last_error: str | None = Field(description="The last attempt's error, or `process died while handling`.")
    failed_at: dt.datetime
    event_created_at: dt.datetime


class RedriveIn(Input):
    handler: str = Field(
        min_length=1, max_length=200, description="The handler whose dead deliveries to retry."
    )
    event_id: uuid.UUID | None = Field(
        default=None, description="Only this event's delivery; else all of them."
    )
    reason: str | None = Field(default=None, max_length=500, description="Optional note for the audit log.")


class RedriveOut(BaseModel):
    handler: str
    event_id: uuid.UUID | None
    redriven: int = Field(description="Deliveries put back to pending (0: nothing was dead).")
