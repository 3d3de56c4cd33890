"""The FastAPI app: REST routers, MCP over streamable HTTP at /mcp, Inngest at /api/inngest."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.routing import Route
from starlette.types import ASGIApp

from core import __version__
from core.config import Settings, get_settings
from core.metrics import DatabaseGauges
from core.observability import get_logger
from core.ratelimit import RateLimits
from core.relay import Relay, Sink
from core.secret_binding import verify_secrets
from core.uow import Database
from servers import apidocs, portal, public
from servers import mcp as mcp_door
from servers import oauth as oauth_door
from servers.api import api_routers
from servers.api.deps import CheckedRoute, KnownPaths
from servers.health import install_probes
from servers.mcp_changes import ToolListChanges
from servers.metrics import RouteMetrics, install_metrics, metrics_listener
from servers.middleware import BodyLimit, RequestContext
from servers.openapi import install_openapi, operation_names
from servers.problems import install_problem_handlers
from servers.ratelimit import RateLimit
from servers.registry_sync import sync_registry
from servers.telemetry import configure_tracing, instrument_app

log = get_logger("atlilith.app")

DESCRIPTION = """Atlilith's REST API for the provider portal and peer services.

Authenticate with `Authorization: Bearer <token>`: an access token from `POST /v1/auth/login`
or an API key. Each request acts in one context: personal, or one org you belong to (the
token's context, or `X-Atlilith-Org`). OAuth access tokens of MCP hosts are for `/mcp` only and
refused here; `/v1/oauth` serves the consent page and connected apps (the authorization server
itself is at `/.well-known/oauth-authorization-server`). Errors are RFC 9457 problem+json with a
stable `code` and a `hint`. Lists paginate with `limit` and `cursor`. Requests are rate-limited
per credential and per address: `429` with `Retry-After`, and the `RateLimit` /
`RateLimit-Policy` fields on every answer. Editable resources answer with an `ETag`; send it
back in `If-Match` and a change made meanwhile gets `412 precondition_failed` instead of being
overwritten."""


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    run_relay: bool | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    configure_tracing()
    database = db or Database(settings)
    mcp_server = mcp_door.build_server(database)
    mcp_app = mcp_door.http_app(mcp_server, database)
    tool_changes = ToolListChanges(database)
    tool_changes.attach(mcp_server)
    sink: Sink | None = None
    inngest_client = None
    if settings.inngest_enabled:
        from servers import inngest as inngest_door

        inngest_client = inngest_door.make_client(settings)
        sink = inngest_door.InngestSink(inngest_client)
    relay_on = settings.relay_enabled if run_relay is None else run_relay
    app = FastAPI(
        title="Atlilith",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(database, mcp_server, tool_changes, sink, relay_on=relay_on, owns_db=db is None),
        # `/docs` is `servers.apidocs`: Swagger UI served from here, under a strict CSP.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # Spans come from `servers.telemetry` (the ASGI instrumentation, when an exporter is
        # configured) and `core.observability`; metrics from Prometheus (`servers.metrics`).
        # FastAPI's own OpenTelemetry layer would duplicate them, and asked on every request
        # whether the global providers were configured (three lookups, about 3 µs).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    # Before any route is added: the app's own routes (health, metrics, the portal's shells,
    # Inngest's) check their query text as the feature routers' do.
    app.router.route_class = CheckedRoute
    app.state.db = database
    app.state.settings = settings
    app.state.mcp = mcp_server
    app.state.tool_changes = tool_changes
    app.state.metric_gauges = DatabaseGauges(database, max_age=settings.metrics_cache_seconds)
    install_problem_handlers(app)
    _add_health(app, database)
    install_probes(app, settings, database, app.state.metric_gauges)
    install_metrics(app, app.state.metric_gauges)
    _add_routes(app, settings, database, mcp_server, mcp_app, inngest_client)
    _add_middleware(app, settings, database)
    instrument_app(app)
    return app


def _lifespan(
    database: Database,
    mcp_server: mcp_door.AtlilithServer,
    tool_changes: ToolListChanges,
    sink: Sink | None,
    *,
    relay_on: bool,
    owns_db: bool,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Start-up and shut-down: secrets checked, MCP sessions, the registry sync, the relay and
    the tool-list change listener; the database disposed of when the app created it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before anything is served or synced: a process whose secrets differ from the
        # database's would split tokens and ids with the others (core.secret_binding).
        await verify_secrets(database)
        async with AsyncExitStack() as stack:
            # Mounted inside FastAPI, the MCP app's own lifespan does not run: enter it here.
            await stack.enter_async_context(mcp_server.session_manager.run())
            app.state.metrics_port = await stack.enter_async_context(
                metrics_listener(app.state.settings.metrics_address, app.state.metric_gauges)
            )
            await sync_registry(database)
            stop = asyncio.Event()
            task: asyncio.Task[None] | None = None
            changes_task = await tool_changes.started(stop)
            if relay_on:
                relay = Relay(database, sink)
                app.state.relay = relay
                task = asyncio.create_task(relay.run(stop), name="atlilith-relay")
            log.info("app_started", version=__version__, relay=relay_on, inngest=sink is not None)
            try:
                yield
            finally:
                stop.set()
                if task is not None:
                    await asyncio.wait_for(task, timeout=10)
                await asyncio.wait_for(changes_task, timeout=10)
                if owns_db:
                    await database.dispose()

    return lifespan


def _add_health(app: FastAPI, database: Database) -> None:
    @app.get("/health", tags=["health"], operation_id="health")
    async def health() -> JSONResponse:
        """Liveness and database reachability: 200 when ready, 503 while the database is out."""
        db_ok = await database.ping()
        body: dict[str, Any] = {
            "name": "atlilith",
            "version": __version__,
            "timestamp": dt.datetime.now(dt.UTC).isoformat(),
            "status": "ok" if db_ok else "degraded",
            "database": "ok" if db_ok else "unavailable",
        }
        return JSONResponse(body, status_code=200 if db_ok else 503)


def _add_routes(
    app: FastAPI,
    settings: Settings,
    database: Database,
    mcp_server: mcp_door.AtlilithServer,
    mcp_app: ASGIApp,
    inngest_client: Any,
) -> None:
    """REST, Inngest, OAuth, MCP and the portal, in the order their paths must be matched."""
    for router in api_routers():
        app.include_router(router)
    routes = [r for router in api_routers() for r in router.routes if isinstance(r, APIRoute)]
    install_openapi(app, operation_names(routes, mcp_server.every_tool()))
    if inngest_client is not None:
        from servers import inngest as inngest_door

        inngest_door.mount(app, database, inngest_client)

    # The OAuth authorization server MCP hosts sign in through (docs/oauth.md).
    app.router.routes.extend(oauth_door.oauth_routes(database))
    # MCP over streamable HTTP (and its RFC 9728 metadata) first: exact paths no other route
    # can claim, matched before the REST routers. Behind them, every MCP request was tried
    # against each REST route, by the router and again by the route metrics -- a fifth of an
    # MCP call's CPU.
    app.router.routes[0:0] = [
        Route(path, endpoint=mcp_app) for path in ("/mcp", "/.well-known/oauth-protected-resource/mcp")
    ]

    # The clients' pages (booking, manage), then the portal: its catch-all client routes must not
    # shadow an API, MCP or public path.
    apidocs.mount(app)
    public.mount(app, settings)
    portal.mount(app, settings)
    # Last, in front of them all: it remembers which of the routes above serves a path.
    app.router.routes.insert(0, KnownPaths(app.router.routes))


def _add_middleware(app: FastAPI, settings: Settings, database: Database) -> None:
    """The last added runs outermost: the request context, the route metrics, then the body
    limit, CORS, and the rate limit nearest the routes."""
    # Inside CORS (a cross-origin caller can read its 429) and the body limit (what it drains
    # of a refused request's body is bounded).
    app.state.rate_limits = RateLimits(settings, database.tokens)
    app.add_middleware(RateLimit, limits=app.state.rate_limits)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["X-Trace-Id", "RateLimit", "RateLimit-Policy", "Retry-After", "ETag"],
        )
    # Analytics batches of up to 10,000 events need more than the default.
    app.state.body_limit_overrides = {"/v1/analytics/events": settings.analytics_max_body_bytes}
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, overrides=app.state.body_limit_overrides)
    # Outside the rate and body limits, so their refusals are counted under the route asked for.
    app.add_middleware(RouteMetrics, routes=app.router.routes)
    app.add_middleware(RequestContext, expose_db_stats=settings.expose_db_stats)
