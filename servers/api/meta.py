"""/v1/meta: what a client needs to know about this server before it signs in — where it is
reached (the base and MCP URLs to put in `claude mcp add`) and the scopes an API key may carry."""

from __future__ import annotations

from fastapi import Request
from pydantic import BaseModel, Field

from core import __version__
from core.config import Settings
from core.context import ALL_SCOPES, known_scopes
from servers.api.deps import FeatureRouter

router = FeatureRouter()


class ScopeOut(BaseModel):
    scope: str
    description: str


class MetaOut(BaseModel):
    name: str
    version: str
    public_url: str = Field(description="Base URL for clients: ATLILITH_PUBLIC_URL, else http://HOST:PORT.")
    public_url_configured: bool = Field(description="Whether ATLILITH_PUBLIC_URL is set.")
    mcp_url: str = Field(description="The MCP endpoint, for `claude mcp add --transport http`.")
    api_key_scopes: list[ScopeOut] = Field(description="Scopes POST /v1/api-keys accepts (or `<feature>:*`).")


@router.get("/v1/meta", response_model=MetaOut, tags=["meta"])
async def server_meta(request: Request) -> MetaOut:
    """About this server; no credential needed."""
    settings: Settings = request.app.state.settings
    base = settings.url_for_clients(str(request.base_url))
    scopes = {ALL_SCOPES: "everything the person may do", **known_scopes()}
    return MetaOut(
        name="atlilith",
        version=__version__,
        public_url=base,
        public_url_configured=settings.public_url is not None,
        mcp_url=f"{base}/mcp",
        api_key_scopes=[ScopeOut(scope=s, description=d) for s, d in scopes.items()],
    )
