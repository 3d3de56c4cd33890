"""The HTTP side of the metrics (`core.metrics`): a per-route request counter and latency
histogram, and the Prometheus endpoint — `/metrics` for platform admins' credentials, or a
separate listener on `ATLILITH_METRICS_ADDRESS` for a scraper on a private network."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, start_http_server
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import audit
from core.errors import NotFound
from core.metrics import HTTP_DURATION, HTTP_REQUESTS, DatabaseGauges, Exposition, ThreadedExposition
from core.observability import get_logger
from servers.api.deps import CallerDep, KnownPaths

__all__ = ["RouteMetrics", "install_metrics", "metrics_listener"]

log = get_logger("atlilith.metrics")
# A path no route matches is counted under one label: raw paths would let any caller create
# series without bound.
UNMATCHED = "unmatched"


class RouteMetrics:
    """Counts each HTTP request under its route's path template (`/v1/orgs/{slug}`), method and
    status, and observes its duration. A request refused before routing (rate limit, body
    limit) is counted under the route it asked for, found by matching only then."""

    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes
        # Each series' child, by its labels: `labels()` checks and joins them and takes the
        # metric's lock on every call. As many entries as the metrics have series.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            method = scope.get("method", "")
            route = self._template(scope)
            key = (method, route, status)
            counted = self._counted.get(key)
            if counted is None:
                counted = self._counted[key] = HTTP_REQUESTS.labels(method, route, str(status))
            timed = self._timed.get((method, route))
            if timed is None:
                timed = self._timed[method, route] = HTTP_DURATION.labels(method, route)
            counted.inc()
            timed.observe(time.perf_counter() - started)

    def _template(self, scope: Scope) -> str:
        # The router leaves the route it chose in the scope; a refused request never reached it.
        route = scope.get("route") or _matching(self.routes, scope)
        path = getattr(route, "path", None)
        return path if isinstance(path, str) and path else UNMATCHED


def _matching(routes: list[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route that would have served the request. FastAPI keeps an included router as one
    entry that matches for any of its routes (`original_router`): look inside it."""
    for candidate in routes:
        if isinstance(candidate, KnownPaths):  # a shortcut to one of the routes after it
            continue
        if candidate.matches(scope)[0] is Match.FULL:
            inner = getattr(getattr(candidate, "original_router", None), "routes", None)
            return _matching(inner, scope) if isinstance(inner, list) else candidate
    return None


def install_metrics(app: FastAPI, gauges: DatabaseGauges) -> None:
    """`/metrics` on the app: for a platform admin's credential (`admin:read`), or not here at
    all (404) when the separate listener serves it."""
    app.state.metrics = Exposition(gauges)
    separate = app.state.settings.metrics_address is not None

    @app.get("/metrics", include_in_schema=False)
    async def metrics(request: Request, caller: CallerDep) -> Response:
        if separate:
            # Served by the separate listener only: this port answers as if there were no such path.
            raise NotFound("no such path", hint="metrics are served on the separate metrics address")
        async with caller.context(person_level=True) as (ctx, uow):
            await audit.require_platform_admin(ctx, uow, write=False)
        exposition: Exposition = request.app.state.metrics
        return Response(await exposition.render(), media_type=CONTENT_TYPE_LATEST)


@asynccontextmanager
async def metrics_listener(address: str | None, gauges: DatabaseGauges) -> AsyncIterator[int | None]:
    """Serve the metrics on `address` ("host:port") while the app runs; yields the bound port
    (None when no address is set). Anyone who reaches the address reads the metrics: bind it to
    an interface only the scraper reaches."""
    if address is None:
        yield None
        return
    host, _, port = address.rpartition(":")
    exposition = ThreadedExposition(gauges, asyncio.get_running_loop())
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=exposition)
    log.info("metrics_listening", address=address)
    try:
        yield int(server.server_port)
    finally:
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        thread.join(timeout=5)
