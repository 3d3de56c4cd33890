"""Probes for an orchestrator beside `GET /health`: `/health/live` (the process answers; no
database) and `/health/ready` (the database answers within a bound and the relay keeps up)."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from core.config import Settings
from core.metrics import DatabaseGauges
from core.uow import Database
from servers.problems import problem_response

__all__ = ["install_probes"]


def install_probes(app: FastAPI, settings: Settings, database: Database, gauges: DatabaseGauges) -> None:
    @app.get("/health/live", tags=["health"], operation_id="health_live")
    async def live() -> JSONResponse:
        """The process is up and serving; says nothing of the database (restart only if this fails)."""
        return JSONResponse({"status": "ok"})

    @app.get("/health/ready", tags=["health"], operation_id="health_ready")
    async def ready() -> JSONResponse:
        """Ready for traffic: the database answered within `ATLILITH_HEALTH_READY_TIMEOUT_SECONDS`
        and the oldest undelivered event is younger than `ATLILITH_HEALTH_MAX_RELAY_LAG_SECONDS`.
        503 problem `not_ready` otherwise, naming which check failed."""
        try:
            db_ok = await asyncio.wait_for(database.ping(), settings.health_ready_timeout_seconds)
        except TimeoutError:
            db_ok = False
        if not db_ok:
            return _not_ready("database", "the database did not answer in time", "check the database")
        bound = settings.health_max_relay_lag_seconds
        if not bound:
            return JSONResponse({"status": "ok", "database": "ok"})
        # The gauges' snapshot is cached: an unauthenticated probe cannot make the lag query run
        # more often than a scrape does.
        snapshot = await gauges.refresh()
        if not snapshot.up:
            return _not_ready("relay", "the relay's lag could not be read", "check the database")
        if snapshot.outbox_oldest_seconds > bound:
            return _not_ready(
                "relay",
                f"the oldest undelivered event is {snapshot.outbox_oldest_seconds:.0f} s old"
                f" (bound {bound:.0f} s)",
                "check that a relay runs (`atlilith relay` or the app's) and that Inngest is reachable",
            )
        return JSONResponse(
            {"status": "ok", "database": "ok", "relay_lag_seconds": round(snapshot.outbox_oldest_seconds, 3)}
        )


def _not_ready(check: str, detail: str, hint: str) -> JSONResponse:
    return problem_response(503, "not_ready", "Not ready", detail, hint=hint, extra={"check": check})
