"""Shapes of the OAuth REST endpoints (`/v1/oauth/...`) the consent page and the portal use."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, Field

from core.validation import Input, SlugRef


class ScopeOut(BaseModel):
    name: str
    description: str


class OAuthClientOut(BaseModel):
    client_id: str
    name: str = Field(description="The client's own name for itself (as it registered): unverified.")
    client_uri: str | None = None
    logo_uri: str | None = None


class OAuthRequestOut(BaseModel):
    """An authorization request waiting for your decision."""

    id: str
    client: OAuthClientOut
    redirect_host: str = Field(description="Where your browser goes back to after you decide.")
    scopes: list[ScopeOut]
    resource: str = Field(description="What the client will get access to: this server's MCP endpoint.")
    expires_at: dt.datetime


class OAuthApproveIn(Input):
    org: SlugRef | None = Field(
        default=None,
        description="The context the client acts in by default: an org you belong to (slug), or "
        "null for personal.",
    )


class OAuthRedirectOut(BaseModel):
    redirect_to: str = Field(description="Send the browser here: back to the client.")


class ConnectionContextOut(BaseModel):
    kind: Literal["personal", "org"]
    org: str | None = Field(default=None, description="The org's slug (null when personal).")


class ConnectionOut(BaseModel):
    """A connected app: a client you let act for you, in the context you chose."""

    id: uuid.UUID
    client_id: str
    client_name: str
    context: ConnectionContextOut
    scopes: list[str]
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
