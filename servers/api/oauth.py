"""/v1/oauth: the consent page's calls (a request: see, approve, deny) and connected apps."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Path

from core.oauth import service
from core.oauth.schemas import ConnectionOut, OAuthApproveIn, OAuthRedirectOut, OAuthRequestOut
from core.pagination import Page
from servers.api.deps import CallerDep, FeatureRouter, PageDep

router = FeatureRouter(tags=["oauth"])

RequestId = Annotated[
    str,
    Path(
        max_length=100,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `request` of the consent page's URL (`/oauth/consent?request=...`).",
    ),
]


@router.get("/v1/oauth/requests/{request_id}", response_model=OAuthRequestOut)
async def get_request(request_id: RequestId, caller: CallerDep) -> OAuthRequestOut:
    """An MCP host's authorization request, for the consent page: which client, where it
    returns to, what it may do. The first signed-in person to open it decides it; to anyone
    else it does not exist (404)."""
    return await caller.call_person_level(service.get_request, request_id)


@router.post("/v1/oauth/requests/{request_id}/approve", response_model=OAuthRedirectOut)
async def approve_request(request_id: RequestId, data: OAuthApproveIn, caller: CallerDep) -> OAuthRedirectOut:
    """Let the client act for you in the context you choose (`org`: one of your orgs, or null
    for personal). Answers where to send the browser: back to the client, with its code."""
    return await caller.call_person_level(service.approve_request, request_id, data)


@router.post("/v1/oauth/requests/{request_id}/deny", response_model=OAuthRedirectOut)
async def deny_request(request_id: RequestId, caller: CallerDep) -> OAuthRedirectOut:
    """Refuse the request; the client is told `access_denied`."""
    return await caller.call_person_level(service.deny_request, request_id)


@router.get("/v1/oauth/connections", response_model=Page[ConnectionOut])
async def list_connections(caller: CallerDep, page: PageDep) -> Page[ConnectionOut]:
    """Your connected apps: MCP hosts you signed in through OAuth, with the context each acts in."""
    return await caller.call_person_level(service.list_connections, page)


@router.delete("/v1/oauth/connections/{connection_id}", response_model=ConnectionOut)
async def revoke_connection(connection_id: uuid.UUID, caller: CallerDep) -> ConnectionOut:
    """Disconnect an app: its tokens are refused from its next call on (401)."""
    return await caller.call_person_level(service.revoke_connection, connection_id)
