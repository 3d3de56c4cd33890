"""The component registry (/v1/registry), installations per context (/v1/installations) and
peer components for platform admins (/v1/admin/components)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response, status

from core import registry as service
from core.billing.schemas import COMPONENT_PATTERN
from core.pagination import Page
from core.registry.schemas import (
    Component,
    ComponentSummary,
    Installation,
    InstallationUpdate,
    InstallIn,
    Kind,
    PeerComponentIn,
    PeerComponentOut,
    PeerComponentUpdate,
    VersionOut,
)
from servers.api.deps import CallerDep, FeatureRouter, IdempotencyKey, IfMatch, PageDep, tagged

router = FeatureRouter()

NOT_ROUTES = {
    "registry.sync_builtins": "runs at start-up from what the server serves (servers.registry_sync)",
    "registry.install_builtins": "the seed installs every built-in for the bootstrap person and org",
    "registry.listed_toolsets": "the MCP door's per-caller tools/list filter",
    "registry.is_platform_admin": "a check inside other operations",
}
Slug = Annotated[str, Path(pattern=COMPONENT_PATTERN, description="The component's slug, e.g. `bookings`.")]


@router.get("/v1/registry", response_model=Page[ComponentSummary], tags=["registry"])
async def search_components(
    caller: CallerDep,
    page: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="Words to search for.")] = None,
    kind: Annotated[Kind | None, Query(description="Only built-in or peer components.")] = None,
) -> Page[ComponentSummary]:
    """The catalogue: ranked by relevance to `q` (full text + typo-tolerant), else by slug;
    `installed` says whether your context has each one."""
    return await caller.call(service.search_components, page, q, kind)


@router.get("/v1/registry/{slug}", response_model=Component, tags=["registry"])
async def get_component(slug: Slug, caller: CallerDep) -> Component:
    """One component: actions with their schemas and prices, tools, scopes, skill."""
    return await caller.call(service.get_component, slug)


@router.get("/v1/registry/{slug}/versions", response_model=Page[VersionOut], tags=["registry"])
async def list_versions(slug: Slug, caller: CallerDep, page: PageDep) -> Page[VersionOut]:
    """Every version and tools hash the component has had, newest first."""
    return await caller.call(service.list_versions, slug, page)


@router.get(
    "/v1/registry/{slug}/skill",
    response_class=Response,
    tags=["registry"],
    responses={200: {"content": {"text/markdown": {}}, "description": "The SKILL.md text."}},
)
async def get_skill(slug: Slug, caller: CallerDep) -> Response:
    """The component's SKILL.md, to drop where your agent finds skills."""
    async with caller.context() as (ctx, uow):
        text = await service.get_skill(ctx, uow, slug)
    return Response(content=text, media_type="text/markdown; charset=utf-8")


@router.get("/v1/installations", response_model=Page[Installation], tags=["registry"])
async def list_installations(caller: CallerDep, page: PageDep) -> Page[Installation]:
    """Components installed in your context."""
    return await caller.call(service.list_installations, page)


@router.post(
    "/v1/installations",
    response_model=Installation,
    status_code=status.HTTP_201_CREATED,
    tags=["registry"],
    responses={200: {"model": Installation, "description": "Already installed (config untouched)."}},
)
async def install(
    data: InstallIn, caller: CallerDep, response: Response, idempotency_key: IdempotencyKey = None
) -> Installation:
    """Install a component in your context (org: owner or admin): 201 new, 200 already there."""
    async with caller.context() as (ctx, uow):
        out = await service.install(ctx, uow, data, idempotency_key)
    if not out.created:
        response.status_code = status.HTTP_200_OK
    return Installation.model_validate(out.model_dump(exclude={"created"}))


@router.get("/v1/installations/{slug}", response_model=Installation, tags=["registry"])
async def get_installation(slug: Slug, caller: CallerDep, response: Response) -> Installation:
    """One installed component and its config; `ETag` for a conditional change."""
    return tagged(response, await caller.call(service.get_installation, slug))


@router.patch("/v1/installations/{slug}", response_model=Installation, tags=["registry"])
async def update_installation(
    slug: Slug, data: InstallationUpdate, caller: CallerDep, response: Response, if_match: IfMatch = None
) -> Installation:
    """Replace the config of an installed component (`If-Match`: only if unchanged since read)."""
    return tagged(response, await caller.call(service.update_installation, slug, data, if_match))


@router.delete("/v1/installations/{slug}", status_code=status.HTTP_204_NO_CONTENT, tags=["registry"])
async def uninstall(slug: Slug, caller: CallerDep) -> Response:
    """Uninstall: the component's tools stop answering in this context at once."""
    async with caller.context() as (ctx, uow):
        await service.uninstall(ctx, uow, slug)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/v1/admin/components",
    response_model=PeerComponentOut,
    status_code=status.HTTP_201_CREATED,
    tags=["admin"],
)
async def register_peer_component(data: PeerComponentIn, caller: CallerDep) -> PeerComponentOut:
    """Platform admin: register a peer component (registry entry + runnable peer, at once);
    the response carries its first key (Standard Webhooks), once."""
    return await caller.call_person_level(service.register_peer_component, data)


@router.patch("/v1/admin/components/{slug}", response_model=PeerComponentOut, tags=["admin"])
async def update_peer_component(slug: Slug, data: PeerComponentUpdate, caller: CallerDep) -> PeerComponentOut:
    """Platform admin: change a peer component (and its runnable peer), or rotate its secret."""
    return await caller.call_person_level(service.update_peer_component, slug, data)
